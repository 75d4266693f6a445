package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/health"
)

func newStatus() *cobra.Command {
	var (
		path, natsURL string
		watch         bool
		interval      time.Duration
		timeout       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a one-screen summary: queues, batches, workers, breakers, storage, dead letters, capture",
		Long: `Status prints what herd is doing on one screen: pending, ack-pending and
redelivered requests per priority with the age of the oldest, batches pending
per model, workers with their models, slots and heartbeat age, breakers, the
cache and results buckets, dead letters and whether capture is on.

--watch redraws it every --interval until Ctrl-C (clearing the screen on a
terminal; plain successive summaries otherwise). Without --watch the exit code
is herd health's: 0 ok, 1 degraded, 2 down, 64 usage or configuration error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return &exitError{exitUsage, fmt.Errorf("--interval %s must be positive", interval)}
			}
			p, err := newProber(cmd, path, timeout, nil)
			if err != nil {
				return err
			}
			defer p.close()
			out := cmd.OutOrStdout()
			th := health.DefaultThresholds()
			if !watch {
				s := p.snapshot(cmd.Context())
				if err := health.WriteStatus(out, s, th); err != nil {
					return err
				}
				return levelError(health.Evaluate(s, th))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			redraw := isTerminal(out)
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				s := p.snapshot(ctx)
				if ctx.Err() != nil {
					return nil
				}
				if redraw {
					fmt.Fprint(out, "\x1b[H\x1b[2J")
				}
				if err := health.WriteStatus(out, s, th); err != nil {
					return err
				}
				if !redraw {
					fmt.Fprintln(out)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	f.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	f.BoolVarP(&watch, "watch", "w", false, "redraw every --interval until Ctrl-C")
	f.DurationVar(&interval, "interval", 2*time.Second, "how often --watch redraws")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long gathering one summary may take")
	return cmd
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
