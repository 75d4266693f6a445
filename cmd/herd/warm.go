package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/replay"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/warm"
	"github.com/sutazai/herd/internal/wire"
)

func init() { register(newCache) }

func newCache() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Work on herd's answer cache (herd_cache)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCacheWarm())
	return cmd
}

func newCacheWarm() *cobra.Command {
	var (
		path, natsURL, since, until, priority, jsonPath string
		quiet                                           bool
	)
	d := warm.DefaultConfig()
	cfg := d
	cmd := &cobra.Command{
		Use:   "warm [flags] CAPTURE.jsonl[.gz] | --since 24h",
		Short: "Fill the answer cache from captured traffic: run its reproducible requests at low priority",
		Long: `warm reads a capture file (herd capture export, herd loadgen) or a window of the
HERD_CAPTURE stream (--since, --until) and sends each request whose answer herd caches
(embeddings, temperature 0 or a fixed seed; not streaming, not Herd-Cache: off) once,
through the ask door at low priority as its own agent, with its Herd-Cache-TTL. A request
answered from the cache (Herd-Cache: hit, or coalesced with an identical one) was warm
already and is counted as cached. Use it after a deploy, a model update (a new digest
makes new cache keys) or a cache flush.

At the end it prints the entries added, those already cached, the records skipped and
why, the failures by code, and the cost: Ollama's time (the answers' total_duration) and
tokens. It exits 3 when a request failed.`,
		Example: `  herd capture export --since 24h --out day.jsonl.gz && herd cache warm day.jsonl.gz
  herd cache warm --since 24h --concurrency 4 --json warm.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			fromStream := since != "" || until != ""
			if fromStream == (len(args) == 1) || len(args) > 1 {
				return usageError(fmt.Errorf("give one capture file, or a window of %s (--since, --until)", wire.StreamCapture))
			}
			cfg.Priority = wire.Priority(priority)
			if err := cfg.Validate(); err != nil {
				return usageError(err)
			}
			now := time.Now()
			sinceT, err := parseWhen(since, now)
			if err != nil {
				return usageError(fmt.Errorf("--since: %w", err))
			}
			untilT, err := parseWhen(until, now)
			if err != nil {
				return usageError(fmt.Errorf("--until: %w", err))
			}
			if !quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
			if err != nil {
				return usageError(err)
			}
			defer func() { _ = log.Sync() }()
			nc, err := stack.Connect(c, "herd-cache-warm")
			if err != nil {
				return fmt.Errorf("connect to %s (is `herd up` running?): %w", c.NATS.URL, err)
			}
			defer nc.Close()
			var rep *warm.Report
			err = cli.Run(func(ctx context.Context) error {
				file := ""
				if !fromStream {
					file = args[0]
				}
				recs, _, err := replay.Load(ctx, nc, file, sinceT, untilT)
				if err != nil {
					return err
				}
				rep, err = warm.Run(ctx, nc, recs, cfg)
				return err
			})
			if rep == nil {
				return err
			}
			if werr := rep.WriteText(cmd.OutOrStdout()); werr != nil {
				return werr
			}
			if jsonPath != "" {
				if werr := replayWriteFile(jsonPath, func(f *os.File) error {
					e := json.NewEncoder(f)
					e.SetIndent("", "  ")
					return e.Encode(rep)
				}); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
			if n := len(rep.Failed); n > 0 {
				return &exitError{3, fmt.Errorf("requests failed: %v", rep.Failed)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.StringVar(&since, "since", "", "warm from HERD_CAPTURE: first record time, RFC 3339 or a duration ago (24h)")
	f.StringVar(&until, "until", "", "warm from HERD_CAPTURE: end of the records, RFC 3339 or a duration ago")
	f.StringVar(&priority, "priority", string(d.Priority), "priority the requests are sent at: high, normal or low")
	f.IntVar(&cfg.Concurrency, "concurrency", d.Concurrency, "requests outstanding at once")
	f.DurationVar(&cfg.Timeout, "timeout", d.Timeout, "longest wait for one answer, queue included; a later one counts as failed")
	f.StringVar(&jsonPath, "json", "", "write the report as JSON to this file")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress line on stderr")
	return cmd
}
