package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/loadgen"
	"github.com/sutazai/herd/internal/replay"
	"github.com/sutazai/herd/internal/stack"
)

func init() { register(newCapacity) }

func newCapacity() *cobra.Command {
	var (
		path, natsURL, models, jsonPath, htmlPath string
		fleet, quiet                              bool
		step, drain, fleetSpan                    time.Duration
		seed                                      int64
	)
	cc := replay.DefaultCapacityConfig()
	cmd := &cobra.Command{
		Use:   "capacity [flags] CAPTURE.jsonl[.gz] | --fleet",
		Short: "Find the highest arrival rate at which herd holds its latency and error targets",
		Long: `capacity replays a capture (or the generated fleet, --fleet) at growing speeds, each step
a short replay (--step, looping the traffic, then --drain for the answers): it doubles the
speed from --start while a step holds the targets, halves it while one misses, then
bisects between the highest that held and the lowest that missed, until they are within
--precision, --max-steps replays ran or --max-total passed.

A step holds when p95 and p99 of its answers (from each request's due time) are under
--p95 and --p99 and errors and lost requests are under --errors of those sent. It prints
every step and the capacity: the highest arrival rate that held, overall, per priority
and per model (each at its own rate); --html draws rate against p50/p95/p99.

With --fleet every step generates the fleet again from its own seed, so repeats do not
find the previous step's answers in herd's cache; a capture is the same every step.`,
		Example: `  herd capacity --fleet --models '*=herd-tiny' --html capacity.html
  herd capacity monday.jsonl.gz --p95 1s --p99 3s --errors 0.01 --step 30s --max-total 20m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if fleet == (len(args) == 1) || len(args) > 1 {
				return &exitError{2, fmt.Errorf("give one capture file, or --fleet")}
			}
			f := loadgen.DefaultFleet()
			if models != "" {
				m, err := loadgen.ParseModelMap(models)
				if err != nil {
					return &exitError{2, err}
				}
				if f, err = f.MapModels(m); err != nil {
					return &exitError{2, err}
				}
			}
			var recs []capture.Record
			source := "fleet (internal/loadgen)"
			if !fleet {
				var err error
				if recs, err = replay.LoadFile(args[0]); err != nil {
					return &exitError{2, err}
				}
				source = "file " + args[0]
			}
			cc.StepTime = step + drain + 10*time.Second
			if err := cc.Validate(); err != nil {
				return &exitError{2, err}
			}
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = log.Sync() }()
			nc, err := stack.Connect(c, "herd-capacity")
			if err != nil {
				return fmt.Errorf("connect to %s (is `herd up` running?): %w", c.NATS.URL, err)
			}
			defer nc.Close()
			stderr := cmd.ErrOrStderr()
			n := 0
			run := func(ctx context.Context, speed float64) (*replay.Report, error) {
				n++
				steps := recs
				if fleet {
					var gerr error
					if steps, gerr = loadgen.Generate(f, loadgen.Options{Seed: uint64(seed) + uint64(n), Start: time.Now(), Duration: fleetSpan}); gerr != nil {
						return nil, gerr
					}
				}
				rc := replay.DefaultConfig()
				rc.Speed, rc.Duration, rc.Loop, rc.Drain, rc.Seed = speed, step, true, drain, seed
				rc.Source, rc.Target = source, c.NATS.URL
				r, err := replay.New(nc, steps, rc, log)
				if err != nil {
					return nil, err
				}
				if !quiet {
					fmt.Fprintf(stderr, "step %d: speed %s for %v ...", n, replay.FormatSpeed(speed), step)
				}
				rep, err := r.Run(ctx)
				if err == nil && !quiet {
					lat := rep.Latency
					if lat == nil {
						lat = &replay.Summary{}
					}
					fmt.Fprintf(stderr, " %.1f/s sent, p95 %.0f ms, p99 %.0f ms, %d errors, %d lost\n",
						float64(rep.Sent)/max(rep.SendSeconds, 1e-9), lat.P95Ms, lat.P99Ms, rep.Errors, rep.Lost)
				}
				return rep, err
			}
			var capy *replay.Capacity
			err = cli.Run(func(ctx context.Context) error {
				var err error
				capy, err = replay.SearchCapacity(ctx, cc, run)
				return err
			})
			if capy == nil {
				return err
			}
			capy.Source = source
			out := cmd.OutOrStdout()
			fmt.Fprintln(out)
			if werr := capy.WriteText(out); werr != nil {
				return werr
			}
			if jsonPath != "" {
				if werr := replayWriteFile(jsonPath, func(f *os.File) error { return capy.WriteJSON(f) }); werr != nil {
					return werr
				}
			}
			if htmlPath != "" {
				if werr := replayWriteFile(htmlPath, func(f *os.File) error { return capy.WriteHTML(f) }); werr != nil {
					return werr
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	fl.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	fl.BoolVar(&fleet, "fleet", false, "replay the generated fleet (herd loadgen's default) instead of a capture")
	fl.StringVar(&models, "models", "", `with --fleet: map its models to yours, e.g. "*=herd-tiny"`)
	fl.DurationVar(&fleetSpan, "fleet-span", time.Minute, "with --fleet: how much traffic each step generates at speed 1 (looped)")
	fl.DurationVar(&cc.Target.P95, "p95", cc.Target.P95, "p95 latency target")
	fl.DurationVar(&cc.Target.P99, "p99", cc.Target.P99, "p99 latency target")
	fl.Float64Var(&cc.Target.ErrorRate, "errors", cc.Target.ErrorRate, "error rate target: errors and lost over sent, 0 to 1")
	fl.Float64Var(&cc.Start, "start", cc.Start, "first speed multiplier")
	fl.Float64Var(&cc.Min, "min-speed", cc.Min, "lowest speed multiplier tried")
	fl.Float64Var(&cc.Max, "max-speed", cc.Max, "highest speed multiplier tried")
	fl.Float64Var(&cc.Precision, "precision", cc.Precision, "stop when the lowest miss is within this share above the highest hold")
	fl.IntVar(&cc.MaxSteps, "max-steps", cc.MaxSteps, "most replays")
	fl.DurationVar(&cc.MaxTotal, "max-total", cc.MaxTotal, "most time for the whole search")
	fl.DurationVar(&step, "step", 20*time.Second, "how long each step sends")
	fl.DurationVar(&drain, "drain", 30*time.Second, "how long each step waits for answers after its last send; later ones count as lost")
	fl.Int64Var(&seed, "seed", 1, "seed for anything random")
	fl.StringVar(&jsonPath, "json", "", "write the search as JSON to this file")
	fl.StringVar(&htmlPath, "html", "", "write the search as a self-contained HTML page (rate against p50/p95/p99)")
	fl.BoolVarP(&quiet, "quiet", "q", false, "no progress lines on stderr")
	return cmd
}
