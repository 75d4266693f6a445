package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/format"
	"github.com/sutazai/herd/internal/wire"
)

func init() { register(newCapture) }

func newCapture() *cobra.Command {
	var path, natsURL string
	cmd := &cobra.Command{
		Use:   "capture",
		Short: "Record agents' requests for replay: switch capture, inspect it, export and import it",
		Long: `Capture records every request agents send, with its original time, priority,
agent, model and body, in the HERD_CAPTURE stream (bounded by capture.max_age
and capture.max_bytes), for herd replay. It never delays or drops a live request.

  herd capture on|off     switch it on every dispatcher at once (herd_control capture.enabled)
  herd capture status     is it on, how much is stored, what the dispatcher counted
  herd capture export     write the records as JSON lines (a file ending .gz is gzipped)
  herd capture import     publish a file's records into HERD_CAPTURE, keeping their times`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&path, "config", "", "configuration file (default config/herd.yaml when present)")
	pf.StringVar(&natsURL, "nats", "", "NATS URL (nats.url; default nats://127.0.0.1:4222)")
	cmd.AddCommand(newCaptureSwitch(&path, true), newCaptureSwitch(&path, false),
		newCaptureStatus(&path), newCaptureExport(&path), newCaptureImport(&path))
	return cmd
}

func newCaptureSwitch(path *string, on bool) *cobra.Command {
	name, value, says := "off", "off", "dispatchers stop recording requests; what HERD_CAPTURE holds stays until capture.max_age"
	if on {
		name, value, says = "on", "on", "every dispatcher records new requests in "+wire.StreamCapture
	}
	return &cobra.Command{
		Use:   name,
		Short: "Switch capture " + name + " on every dispatcher (herd_control " + capture.KeyEnabled + ")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := connect(cmd, *path, "herd-capture")
			if err != nil {
				return err
			}
			defer s.nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			kv, err := s.control(ctx)
			if err != nil {
				return err
			}
			if _, err := kv.Put(ctx, capture.KeyEnabled, []byte(value)); err != nil {
				return fmt.Errorf("set %s: %w", capture.KeyEnabled, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "capture %s: %s\n", name, says)
			return nil
		},
	}
}

func newCaptureStatus(path *string) *cobra.Command {
	var metricsURL string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether capture is on, what HERD_CAPTURE holds and the dispatcher's capture counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := connect(cmd, *path, "herd-capture")
			if err != nil {
				return err
			}
			defer s.nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			out := cmd.OutOrStdout()
			kv, err := s.control(ctx)
			if err != nil {
				return err
			}
			switch e, err := kv.Get(ctx, capture.KeyEnabled); {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				fmt.Fprintf(out, "capture      not switched at run time: dispatchers follow capture.enabled in their configuration (%v here)\n", s.cfg.Capture.Enabled)
			case err != nil:
				return fmt.Errorf("read %s: %w", capture.KeyEnabled, err)
			default:
				fmt.Fprintf(out, "capture      %s (switched %s)\n", e.Value(), e.Created().UTC().Format(time.RFC3339))
			}
			st, err := s.captureStream(ctx)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return fmt.Errorf("stream %s: %w", wire.StreamCapture, err)
			}
			fmt.Fprintf(out, "stream       %s: %d records, %s (keeps %s, %s)\n", wire.StreamCapture,
				info.State.Msgs, format.IEC(info.State.Bytes), ageLimit(info.Config.MaxAge), sizeLimit(info.Config.MaxBytes))
			if info.State.Msgs > 0 {
				first, ferr := capture.RecordTime(ctx, st, info.State.FirstSeq)
				last, lerr := capture.RecordTime(ctx, st, info.State.LastSeq)
				if err := errors.Join(ferr, lerr); err != nil {
					return err
				}
				fmt.Fprintf(out, "records      first %s, last %s\n", first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano))
			}
			if metricsURL == "" {
				metricsURL = capture.MetricsURL(s.cfg.HTTP.Listen)
			}
			if metricsURL == "" || metricsURL == "none" {
				return nil
			}
			m, err := capture.ScrapeCounters(ctx, metricsURL)
			if err != nil {
				fmt.Fprintf(out, "dispatcher   counters not available: %v\n", err)
				return nil
			}
			state := "off"
			if m.Enabled {
				state = "on"
			}
			fmt.Fprintf(out, "dispatcher   %d recorded, %d dropped, capture %s (%s)\n", m.Written, m.Dropped, state, metricsURL)
			return nil
		},
	}
	cmd.Flags().StringVar(&metricsURL, "metrics", "", `the dispatcher's /metrics URL (default from http.listen; "none" skips it)`)
	return cmd
}

func ageLimit(d time.Duration) string {
	if d <= 0 {
		return "any age"
	}
	return "up to " + d.String()
}

func sizeLimit(n int64) string {
	if n <= 0 {
		return "any size"
	}
	return "up to " + format.IEC(uint64(n))
}
