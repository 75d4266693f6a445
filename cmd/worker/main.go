// Command worker runs a herd worker against a NATS server: it pulls
// batches for its models and runs them on Ollama within its CPU budget.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/worker"
)

func main() {
	fs := pflag.NewFlagSet("worker", pflag.ExitOnError)
	path := fs.String("config", "", "configuration file (default config/herd.yaml when present)")
	fs.String("nats", "", "NATS URL (nats.url)")
	fs.String("http", "", "metrics and health listen address (http.listen)")
	fs.String("ollama", "", "Ollama URL (ollama.url; default OLLAMA_HOST)")
	fs.String("id", "", "worker id (worker.id)")
	fs.String("slots", "", "Ollama calls at once (worker.slots)")
	fs.String("cpu-budget", "", "cores this worker may keep busy (worker.cpu_budget)")
	fs.String("data", "", "state directory; a managed Ollama lives in DATA/ollama-ID (server.data)")
	_ = fs.Parse(os.Args[1:])
	c, log, err := cli.Load(fs, *path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen", "ollama": "ollama.url",
		"id": "worker.id", "slots": "worker.slots", "cpu-budget": "worker.cpu_budget", "data": "server.data"})
	if err != nil {
		cli.Fail(2, err)
	}
	err = cli.Run(func(ctx context.Context) error {
		url := stack.OllamaURL(c)
		if url == "" {
			// No Ollama given: run our own on this worker's cores. Several
			// workers on one host, each with managed.cpus of its own, is
			// how herd scales out on one machine.
			mc := c.ManagedFor()
			if c.Managed.Dir == "" {
				mc.Dir = filepath.Join(c.Server.DataDir, "ollama-"+c.Worker.ID)
			}
			inst, err := managed.Start(ctx, mc, log)
			if err != nil {
				return fmt.Errorf("%w: no ollama.url or OLLAMA_HOST, and the managed Ollama did not start: %v", stack.ErrNoOllama, err)
			}
			defer func() { _ = inst.Wait() }()
			url = inst.URL()
		}
		oc, err := ollama.NewClient(url, c.Ollama.Timeout)
		if err != nil {
			return err
		}
		nc, err := stack.Connect(c, "herd-worker")
		if err != nil {
			return err
		}
		defer nc.Close()
		defs, err := stack.Provision(ctx, nc, c)
		if err != nil {
			return err
		}
		reg := ops.NewRegistry()
		w, err := worker.New(ctx, c.Worker, nc, oc, defs, log, reg)
		if err != nil {
			return err
		}
		go func() { _ = ops.Serve(ctx, c.HTTP.Listen, ops.Handler(reg, stack.Ready(nc)), log) }()
		return w.Run(ctx)
	})
	_ = log.Sync()
	if err != nil {
		cli.Fail(1, err)
	}
}
