// Command worker runs a herd worker against a NATS server: it pulls
// batches for its models and runs them on Ollama within its CPU budget.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/sutazai/herd/internal/cli"
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
	_ = fs.Parse(os.Args[1:])
	c, log, err := cli.Load(fs, *path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen", "ollama": "ollama.url",
		"id": "worker.id", "slots": "worker.slots", "cpu-budget": "worker.cpu_budget"})
	if err != nil {
		cli.Fail(2, err)
	}
	err = cli.Run(func(ctx context.Context) error {
		url := stack.OllamaURL(c)
		if url == "" {
			return stack.ErrNoOllama
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
