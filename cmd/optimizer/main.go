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
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/optimizer"
)

func main() { cli.Execute(newCommand()) }

// reportFlags are --once's flags.
type reportFlags struct {
	once, perf, batch, context, bench, all, noStore bool
	window                                          time.Duration
	jsonPath                                        string
}

// kinds returns the reports the flags ask for.
func (r *reportFlags) kinds() []string {
	var kinds []string
	for _, k := range []struct {
		on   bool
		kind string
	}{{r.perf, optimizer.KindPerformance}, {r.batch, optimizer.KindBatch}, {r.context, optimizer.KindContext}, {r.bench, optimizer.KindBenchmark}} {
		if k.on || r.all {
			kinds = append(kinds, k.kind)
		}
	}
	return kinds
}

func newCommand() *cobra.Command {
	var (
		path string
		rf   reportFlags
	)
	cmd := cli.NewService("optimizer", "Run herd's optimizer against a NATS server, or print a report with --once",
		`optimizer reads HERD_METRICS and decides breakers, budget, num_ctx and warmth
in herd_control; it serves the live page, /metrics, /healthz and /readyz on
--http (a port that cannot be bound is an error at start). With --once it
prints a report instead and decides nothing: --performance, --batch,
--context, --benchmark or --all, each with the current figures, every
decision in herd_control and the recommendations; the report is also stored
in HERD_REPORTS on herd.reports.<kind> (unless --no-store).`)
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.String("nats", "", "NATS URL (nats.url)")
	f.String("http", "", "metrics and health listen address (http.listen)")
	f.BoolVar(&rf.once, "once", false, "print a report and exit instead of running")
	f.BoolVar(&rf.perf, "performance", false, "with --once: latency, throughput, errors, cache and tokens per model and priority")
	f.BoolVar(&rf.batch, "batch", false, "with --once: batch sizes, fill and queue waits per model; recommends dispatcher.batch_size and max_wait")
	f.BoolVar(&rf.context, "context", false, "with --once: prompt-token percentiles and truncations per model; current and recommended num_ctx")
	f.BoolVar(&rf.bench, "benchmark", false, "with --once: each model's latest herd bench run from HERD_BENCH, with recommendations")
	f.BoolVar(&rf.all, "all", false, "with --once: every report")
	f.BoolVar(&rf.noStore, "no-store", false, "with --once: do not store the report in HERD_REPORTS")
	f.DurationVar(&rf.window, "window", 5*time.Minute, "with --once: how far back the report looks")
	f.StringVar(&rf.jsonPath, "json", "", "with --once: also write the report as JSON to this file (- for stdout)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url", "http": "http.listen"})
		if err != nil {
			return cli.Usage(err)
		}
		defer func() { _ = log.Sync() }()
		if rf.once {
			kinds := rf.kinds()
			if len(kinds) == 0 {
				return cli.Usage(errors.New("--once needs a report: --performance, --batch, --context, --benchmark or --all"))
			}
			return cli.Run(func(ctx context.Context) error { return report(ctx, c, kinds, &rf, cmd.OutOrStdout()) })
		}
		return cli.Run(func(ctx context.Context) error { return run(ctx, c, log) })
	}
	return cmd
}
