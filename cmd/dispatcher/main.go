// Command dispatcher runs herd's dispatcher against a NATS server: it takes
// requests from HERD_REQ and the herd.ask door and publishes batches.
package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/stack"
)

func main() { cli.Execute(newCommand()) }

func newCommand() *cobra.Command {
	var path string
	cmd := cli.NewService("dispatcher", "Run herd's dispatcher against a NATS server",
		`dispatcher takes requests from HERD_REQ and the herd.ask door, answers cache
hits and errors, coalesces identical requests and publishes batches to
HERD_BATCH. Settings come from the configuration file, HERD_* variables and
these flags; /metrics, /healthz and /readyz are served on --http. A port that
cannot be bound is an error at start.`)
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.String("nats", "", "NATS URL (nats.url)")
	f.String("http", "", "metrics and health listen address (http.listen)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen"})
		if err != nil {
			return cli.Usage(err)
		}
		defer func() { _ = log.Sync() }()
		hs, err := ops.Listen(c.HTTP.Listen)
		if err != nil {
			return err
		}
		return cli.Run(func(ctx context.Context) error {
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
			h := ops.Handler(reg, stack.DispatcherReady(nc, d))
			return cli.Together(ctx, d.Run, func(ctx context.Context) error { return hs.Serve(ctx, h, log) })
		})
	}
	return cmd
}
