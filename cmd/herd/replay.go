package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/replay"
	"github.com/sutazai/herd/internal/stack"
)

func init() { register(newReplay) }

func newReplay() *cobra.Command {
	var (
		path, natsURL, speed, since, until, runID, jsonPath, htmlPath string
		filters                                                       []string
		fromStream, loop, compare, quiet                              bool
		duration, drain                                               time.Duration
		concurrency, maxInflight                                      int
		seed                                                          int64
	)
	d := replay.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "replay [flags] CAPTURE.jsonl[.gz] | --from-stream | --compare A.json B.json",
		Short: "Play captured traffic against herd, open loop, and report latency, errors and losses",
		Long: `replay sends each captured request at its original time from the first record divided by
--speed, with its priority, agent, model, body and cache headers, under a new request id
(<run-id>-<n>), and waits for every answer. Latency counts from the time a request was
due, so a client that falls behind shows as latency, not as a slower schedule.

At the end it prints sent, answered, errors by code, lost (no answer within --drain),
duplicates, throughput, cache hit rate and p50/p95/p99/max per priority and per model;
--json and --html keep the report. It exits 3 when a request was lost or answered twice.`,
		Example: `  herd capture export --out monday.jsonl.gz && herd replay monday.jsonl.gz --speed 4 --html report.html
  herd replay --from-stream --since 1h --speed max --concurrency 200
  herd replay capture.jsonl --loop --duration 10m --filter priority=high --json run.json
  herd replay --compare before.json after.json --html compare.html`,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if compare {
				if len(args) != 2 {
					return &exitError{2, fmt.Errorf("--compare takes two JSON reports, got %d arguments", len(args))}
				}
				a, err := replay.ReadReportFile(args[0])
				if err != nil {
					return &exitError{2, err}
				}
				b, err := replay.ReadReportFile(args[1])
				if err != nil {
					return &exitError{2, err}
				}
				na, nb := replayReportName(args[0]), replayReportName(args[1])
				if err := replay.WriteCompareText(out, a, b, na, nb); err != nil {
					return err
				}
				if htmlPath != "" {
					return replayWriteFile(htmlPath, func(f *os.File) error { return replay.WriteCompareHTML(f, a, b, na, nb) })
				}
				return nil
			}
			if fromStream == (len(args) == 1) || len(args) > 1 {
				return &exitError{2, fmt.Errorf("give one capture file, or --from-stream")}
			}
			if !fromStream && (since != "" || until != "") {
				return &exitError{2, fmt.Errorf("--since and --until go with --from-stream")}
			}
			cfg := d
			var err error
			if cfg.Speed, err = replay.ParseSpeed(speed); err != nil {
				return &exitError{2, err}
			}
			if cfg.Filter, err = replay.ParseFilter(filters); err != nil {
				return &exitError{2, err}
			}
			now := time.Now()
			sinceT, err := parseWhen(since, now)
			if err != nil {
				return &exitError{2, fmt.Errorf("--since: %w", err)}
			}
			untilT, err := parseWhen(until, now)
			if err != nil {
				return &exitError{2, fmt.Errorf("--until: %w", err)}
			}
			cfg.Duration, cfg.Loop, cfg.Seed = duration, loop, seed
			cfg.Concurrency, cfg.MaxInflight, cfg.RunID, cfg.Drain = concurrency, maxInflight, runID, drain
			if !quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return &exitError{2, err}
			}
			defer func() { _ = log.Sync() }()
			cfg.Target = c.NATS.URL
			nc, err := stack.Connect(c, "herd-replay")
			if err != nil {
				return fmt.Errorf("connect to %s (is `herd up` running?): %w", c.NATS.URL, err)
			}
			defer nc.Close()

			var rep *replay.Report
			err = cli.Run(func(ctx context.Context) error {
				file := ""
				if !fromStream {
					file = args[0]
				}
				recs, source, err := replay.Load(ctx, nc, file, sinceT, untilT)
				if err != nil {
					return err
				}
				if cfg.Source = source; fromStream {
					cfg.Source += replayWindow(since, until)
				}
				r, err := replay.New(nc, recs, cfg, log)
				if err != nil {
					return err
				}
				rep, err = r.Run(ctx)
				return err
			})
			if err != nil || rep == nil {
				return err
			}
			fmt.Fprintln(out)
			if err := rep.WriteText(out); err != nil {
				return err
			}
			if jsonPath != "" {
				if err := replayWriteFile(jsonPath, func(f *os.File) error { return rep.WriteJSON(f) }); err != nil {
					return err
				}
			}
			if htmlPath != "" {
				if err := replayWriteFile(htmlPath, func(f *os.File) error { return rep.WriteHTML(f) }); err != nil {
					return err
				}
			}
			if rep.Lost > 0 || rep.Duplicates > 0 {
				return &exitError{3, fmt.Errorf("%d requests lost and %d answered more than once", rep.Lost, rep.Duplicates)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.BoolVar(&fromStream, "from-stream", false, "replay the HERD_CAPTURE stream instead of a file")
	f.StringVar(&since, "since", "", "with --from-stream: first record time, RFC 3339 or a duration ago (1h)")
	f.StringVar(&until, "until", "", "with --from-stream: end of the records, RFC 3339 or a duration ago")
	f.StringVar(&speed, "speed", "1", `time scale: 0.5, 1, 10 ... or "max" (as fast as --concurrency allows)`)
	f.IntVar(&concurrency, "concurrency", d.Concurrency, "with --speed max: requests outstanding at once")
	f.IntVar(&maxInflight, "max-inflight", d.MaxInflight, "bound on outstanding requests; sends beyond it wait and count as client backlog")
	f.DurationVar(&duration, "duration", 0, "stop sending after this long (default: the whole capture)")
	f.BoolVar(&loop, "loop", false, "play the capture again after its end (until --duration or Ctrl-C)")
	f.StringArrayVar(&filters, "filter", nil, "only records matching key=value[,key=value...]; key agent, priority, model or op, values may be shell patterns (repeatable; values of one key are alternatives)")
	f.Int64Var(&seed, "seed", d.Seed, "seed for anything random (the order of records with the same timestamp)")
	f.StringVar(&runID, "run-id", "", "request id prefix, unique per run (default replay-<nuid>)")
	f.DurationVar(&drain, "drain", d.Drain, "how long to wait for answers after the last send; later ones count as lost")
	f.StringVar(&jsonPath, "json", "", "write the report as JSON to this file")
	f.StringVar(&htmlPath, "html", "", "write the report (or the comparison) as a self-contained HTML page")
	f.BoolVar(&compare, "compare", false, "compare two JSON reports side by side")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line on stderr")
	return cmd
}

func replayWindow(since, until string) string {
	var parts []string
	if since != "" {
		parts = append(parts, "since "+since)
	}
	if until != "" {
		parts = append(parts, "until "+until)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// replayReportName is the column name of a report in a comparison.
func replayReportName(path string) string { return strings.TrimSuffix(filepath.Base(path), ".json") }

// replayWriteFile creates path and writes it with fn.
func replayWriteFile(path string, fn func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
