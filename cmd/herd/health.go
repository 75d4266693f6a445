package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/health"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/stack"
)

func init() {
	register(newHealth)
	register(newStatus)
}

// prober gathers health snapshots over one NATS connection, connecting
// (again) when it has none.
type prober struct {
	cfg     config.Config
	url     string
	timeout time.Duration
	defs    *provision.Definitions
	ollama  []string
	nc      *nats.Conn
	js      jetstream.JetStream
}

// newProber loads the configuration (with --nats) and the expected
// definitions; it does not connect yet.
func newProber(cmd *cobra.Command, path string, timeout time.Duration, ollama []string) (*prober, error) {
	c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	_ = log.Sync()
	defs, err := provision.Load(provision.Overrides{})
	if err != nil {
		return nil, &exitError{2, err} // the embedded definitions: a broken build
	}
	if timeout <= 0 {
		return nil, &exitError{exitUsage, fmt.Errorf("--timeout %s must be positive", timeout)}
	}
	return &prober{cfg: c, url: c.NATS.URL, timeout: timeout, defs: defs, ollama: ollama}, nil
}

// snapshot gathers the deployment's state within the prober's timeout.
func (p *prober) snapshot(ctx context.Context) *health.Snapshot {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if p.nc == nil {
		nc, err := stack.Connect(p.cfg, "herd-health", nats.Timeout(p.timeout))
		if err != nil {
			g := &health.Gatherer{Ollama: p.ollama}
			s := health.Unreachable(p.url, time.Now(), err)
			s.Ollama = g.ProbeOllama(ctx)
			return s
		}
		js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(p.timeout))
		if err != nil {
			nc.Close()
			return health.Unreachable(p.url, time.Now(), err)
		}
		p.nc, p.js = nc, js
	}
	if !p.nc.IsConnected() {
		return health.Unreachable(p.url, time.Now(), fmt.Errorf("connection %s", p.nc.Status()))
	}
	g := &health.Gatherer{JS: p.js, URL: p.url, Defs: p.defs, Ollama: p.ollama}
	return g.Gather(ctx)
}

func (p *prober) close() {
	if p.nc != nil {
		p.nc.Close()
	}
}

// levelError turns a report's level into the command's result: nil for
// OK, an exitError carrying 1 (degraded) or 2 (down) otherwise.
func levelError(r *health.Report) error {
	if r.Status == health.OK {
		return nil
	}
	return &exitError{int(r.Status), fmt.Errorf("herd is %s", r.Status)}
}

func newHealth() *cobra.Command {
	var (
		path, natsURL string
		asJSON        bool
		timeout       time.Duration
		ollama        []string
		th            = health.DefaultThresholds()
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check NATS, streams, consumers, buckets, workers, breakers and Ollama; exit 0 ok, 1 degraded, 2 down, 64 usage error",
		Long: `Health checks a herd deployment and prints one line per check, OK, WARN or
FAIL with a short detail (--json prints the structured result):

  nats, jetstream       reachable, JetStream enabled (else down)
  stream, bucket        every stream and KV bucket herd defines exists (else down)
  consumer              lag (pending), ack pending and redeliveries of the request
                        consumers and of every batch consumer
  dead letters          HERD_DLQ's count; degraded when one arrived within the hour
  workers               live registrations (heartbeat within --stale-after) and models
  breakers              degraded while any model's breaker is open
  ollama                with --ollama URL (repeatable): version and models

The exit code is 0 when everything is ok, 1 when herd is degraded (it serves,
but something needs attention), 2 when it is down (NATS unreachable,
JetStream off, or a stream or bucket missing) and 64 when the command line
or the configuration is wrong (sysexits' EX_USAGE: an unknown flag, a
missing --config file), so that a typo never reads as degraded or down.`,
		Example: `  herd health
  herd health --nats nats://10.0.0.5:4222 --ollama http://127.0.0.1:11434 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newProber(cmd, path, timeout, ollama)
			if err != nil {
				return err
			}
			defer p.close()
			r := health.Evaluate(p.snapshot(cmd.Context()), th)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else if err := writeChecks(out, r); err != nil {
				return err
			}
			return levelError(r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.BoolVar(&asJSON, "json", false, "print the structured result as JSON")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long the checks may take in all")
	f.StringArrayVar(&ollama, "ollama", nil, "Ollama base URL to check (repeatable)")
	f.Uint64Var(&th.MaxPending, "max-pending", th.MaxPending, "a consumer with more undelivered messages is degraded")
	f.IntVar(&th.MaxRedelivered, "max-redelivered", th.MaxRedelivered, "a consumer with more redelivered, unacknowledged messages is degraded")
	f.Uint64Var(&th.MaxDLQ, "max-dlq", th.MaxDLQ, "dead letters allowed before a recent one degrades")
	f.DurationVar(&th.WorkerStaleAfter, "stale-after", th.WorkerStaleAfter, "a worker whose heartbeat is older is not live")
	return cmd
}

// writeChecks prints one line per check and the overall level.
func writeChecks(w io.Writer, r *health.Report) error {
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	for _, c := range r.Checks {
		if _, err := fmt.Fprintf(w, "%-4s  %-*s  %s\n", c.Status.Tag(), width, c.Name, c.Detail); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "herd is %s\n", r.Status)
	return err
}
