// Command optimizer runs herd's optimizer against a NATS server: it reads
// HERD_METRICS and decides breakers, budget, num_ctx and warmth in herd_control. With
// --once it prints a report instead and decides nothing: --performance,
// --batch, --context, --benchmark or --all, each with the current figures,
// every decision in herd_control and the recommendations; the report is also
// stored in HERD_REPORTS on herd.reports.<kind> (unless --no-store).
package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/live"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/stack"
)

func main() {
	fs := pflag.NewFlagSet("optimizer", pflag.ExitOnError)
	path := fs.String("config", "", "configuration file (default config/herd.yaml when present)")
	fs.String("nats", "", "NATS URL (nats.url)")
	fs.String("http", "", "metrics and health listen address (http.listen)")
	once := fs.Bool("once", false, "print a report and exit instead of running")
	perf := fs.Bool("performance", false, "with --once: latency, throughput, errors, cache and tokens per model and priority")
	batch := fs.Bool("batch", false, "with --once: batch sizes, fill and queue waits per model; recommends dispatcher.batch_size and max_wait")
	ctxRep := fs.Bool("context", false, "with --once: prompt-token percentiles and truncations per model; current and recommended num_ctx")
	bench := fs.Bool("benchmark", false, "with --once: each model's latest herd bench run from HERD_BENCH, with recommendations")
	all := fs.Bool("all", false, "with --once: every report")
	noStore := fs.Bool("no-store", false, "with --once: do not store the report in HERD_REPORTS")
	span := fs.Duration("window", 5*time.Minute, "with --once: how far back the report looks")
	jsonPath := fs.String("json", "", "with --once: also write the report as JSON to this file (- for stdout)")
	_ = fs.Parse(os.Args[1:])
	c, log, err := cli.Load(fs, *path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen"})
	if err != nil {
		cli.Fail(2, err)
	}
	var kinds []string
	for _, k := range []struct {
		on   bool
		kind string
	}{{*perf, optimizer.KindPerformance}, {*batch, optimizer.KindBatch}, {*ctxRep, optimizer.KindContext}, {*bench, optimizer.KindBenchmark}} {
		if k.on || *all {
			kinds = append(kinds, k.kind)
		}
	}
	if *once && len(kinds) == 0 {
		cli.Fail(2, errors.New("--once needs a report: --performance, --batch, --context, --benchmark or --all"))
	}
	err = cli.Run(func(ctx context.Context) error {
		nc, err := stack.Connect(c, "herd-optimizer")
		if err != nil {
			return err
		}
		defer nc.Close()
		if *once {
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			r, err := optimizer.Once(ctx, js, optimizer.OnceConfig{
				Kinds: kinds, Window: *span, BatchSize: c.Dispatcher.BatchSize, MaxWait: c.Dispatcher.MaxWait,
				Context: c.Optimizer.Context, NumCtx: c.Worker.NumCtx, Auto: c.Dispatcher.Auto,
			}, time.Now())
			if err != nil {
				return err
			}
			if !*noStore {
				if err := r.Store(ctx, js); err != nil {
					return err
				}
			}
			if err := r.WriteText(os.Stdout); err != nil {
				return err
			}
			switch *jsonPath {
			case "":
			case "-":
				return r.WriteJSON(os.Stdout)
			default:
				f, err := os.Create(*jsonPath)
				if err != nil {
					return err
				}
				if err := r.WriteJSON(f); err != nil {
					_ = f.Close()
					return err
				}
				return f.Close()
			}
			return nil
		}
		if _, err := stack.Provision(ctx, nc, c); err != nil {
			return err
		}
		reg := ops.NewRegistry()
		o, err := optimizer.New(ctx, c.Optimizer, nc, log, reg)
		if err != nil {
			return err
		}
		lnc, err := stack.Connect(c, "herd-live")
		if err != nil {
			return err
		}
		defer lnc.Close()
		lc, err := live.New(lnc, live.DefaultConfig(), log)
		if err != nil {
			return err
		}
		mux := ops.Handler(reg, stack.Ready(nc))
		lc.Mount(mux)
		go func() { _ = lc.Run(ctx) }()
		go func() { _ = ops.Serve(ctx, c.HTTP.Listen, mux, log) }()
		return o.Run(ctx)
	})
	_ = log.Sync()
	if err != nil {
		cli.Fail(1, err)
	}
}
