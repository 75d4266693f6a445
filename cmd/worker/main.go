// Command worker runs a herd worker against a NATS server: it pulls
// batches for its models and runs them on Ollama within its CPU budget.
package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/worker"
)

func main() { cli.Execute(newCommand()) }

func newCommand() *cobra.Command {
	var path string
	cmd := cli.NewService("worker", "Run a herd worker against a NATS server",
		`worker pulls batches for its models from HERD_BATCH and runs them on Ollama
within its CPU budget. Without ollama.url or OLLAMA_HOST it starts and
supervises its own Ollama in DATA/ollama-ID. /metrics, /healthz and /readyz
are served on --http; a port that cannot be bound (another worker on this
host has it) is an error at start.`)
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.String("nats", "", "NATS URL (nats.url)")
	f.String("http", "", "metrics and health listen address (http.listen)")
	f.String("ollama", "", "Ollama URL (ollama.url; default OLLAMA_HOST)")
	f.String("id", "", "worker id (worker.id)")
	f.Int("slots", 0, "Ollama calls at once (worker.slots)")
	f.Float64("cpu-budget", 0, "cores this worker may keep busy (worker.cpu_budget)")
	f.String("data", "", "state directory; a managed Ollama lives in DATA/ollama-ID (server.data)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen", "ollama": "ollama.url",
			"id": "worker.id", "slots": "worker.slots", "cpu-budget": "worker.cpu_budget", "data": "server.data"})
		if err != nil {
			return cli.Usage(err)
		}
		defer func() { _ = log.Sync() }()
		hs, err := ops.Listen(c.HTTP.Listen)
		if err != nil {
			return err
		}
		return cli.Run(func(ctx context.Context) error { return run(ctx, c, hs, log) })
	}
	return cmd
}

// run starts the worker's Ollama when none is configured, then the worker
// and its HTTP server, until ctx ends.
func run(ctx context.Context, c config.Config, hs *ops.Server, log *zap.Logger) error {
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
	h := ops.Handler(reg, stack.Ready(nc))
	return cli.Together(ctx, w.Run, func(ctx context.Context) error { return hs.Serve(ctx, h, log) })
}
