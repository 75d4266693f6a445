// Command dispatcher runs herd's dispatcher against a NATS server: it takes
// requests from HERD_REQ and the herd.ask door and publishes batches.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/stack"
)

func main() {
	fs := pflag.NewFlagSet("dispatcher", pflag.ExitOnError)
	path := fs.String("config", "", "configuration file (default config/herd.yaml when present)")
	fs.String("nats", "", "NATS URL (nats.url)")
	fs.String("http", "", "metrics and health listen address (http.listen)")
	_ = fs.Parse(os.Args[1:])
	c, log, err := cli.Load(fs, *path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen"})
	if err != nil {
		cli.Fail(2, err)
	}
	err = cli.Run(func(ctx context.Context) error {
		nc, err := stack.Connect(c, "herd-dispatcher")
		if err != nil {
			return err
		}
		defer nc.Close()
		if _, err := stack.Provision(ctx, nc, c); err != nil {
			return err
		}
		reg := ops.NewRegistry()
		d, err := dispatcher.New(ctx, c.Dispatcher, nc, log, reg)
		if err != nil {
			return err
		}
		go func() { _ = ops.Serve(ctx, c.HTTP.Listen, ops.Handler(reg, stack.DispatcherReady(nc, d)), log) }()
		return d.Run(ctx)
	})
	_ = log.Sync()
	if err != nil {
		cli.Fail(1, err)
	}
}
