package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/replay"
	"github.com/sutazai/herd/internal/wire"
)

func newCaptureExport(path *string) *cobra.Command {
	var out, since, until string
	var filters []string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write HERD_CAPTURE's records as JSON lines",
		Long: `Write the records in HERD_CAPTURE as JSON lines, one capture record each, in
stream order: the format herd replay and herd capture import read. A file name
ending in .gz is gzipped. --since and --until select by the records' original
times; they take an RFC 3339 time or a duration before now ("2h").

--filter keeps the records that match, as in herd replay: comma-separated
key=value pairs with key agent, priority, model or op, repeatable; values may
be shell patterns ("planner-*"). Values of one key are alternatives;
different keys must all match.`,
		Example: `  herd capture export --out monday.jsonl.gz
  herd capture export --since 1h --filter priority=high,priority=normal --filter 'agent=planner-*' > last-hour.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			from, err := parseWhen(since, now)
			if err != nil {
				return &exitError{2, fmt.Errorf("--since: %w", err)}
			}
			to, err := parseWhen(until, now)
			if err != nil {
				return &exitError{2, fmt.Errorf("--until: %w", err)}
			}
			if !from.IsZero() && !to.IsZero() && !from.Before(to) {
				return &exitError{2, fmt.Errorf("--since %s is not before --until %s", from.Format(time.RFC3339), to.Format(time.RFC3339))}
			}
			filter, err := replay.ParseFilter(filters)
			if err != nil {
				return &exitError{2, err}
			}
			s, err := connect(cmd, *path, "herd-capture-export")
			if err != nil {
				return err
			}
			defer s.nc.Close()
			ctx := cmd.Context()
			st, err := s.captureStream(ctx)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return fmt.Errorf("stream %s: %w", wire.StreamCapture, err)
			}
			w, err := capture.CreateFile(out, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			enc := json.NewEncoder(w)
			prog := newProgress(cmd.ErrOrStderr(), "exported")
			read, wrote := 0, 0
			// A record is stored after its original time (a live one just
			// after, an imported one much later), so the stream can start
			// at --since; a minute of slack covers clocks of a cluster's
			// servers that disagree.
			start := time.Time{}
			if !from.IsZero() {
				start = from.Add(-time.Minute)
			}
			if info.State.Msgs > 0 && (start.IsZero() || !start.After(info.State.LastTime)) {
				err = capture.ReadStream(ctx, s.js, start, time.Time{}, func(rec capture.Record) error {
					read++
					if (!from.IsZero() && rec.Time.Before(from)) || (!to.IsZero() && !rec.Time.Before(to)) || !filter.Match(&rec) {
						return nil
					}
					wrote++
					prog.update(wrote)
					return enc.Encode(&rec)
				})
			}
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if out != "-" {
					_ = os.Remove(out)
				}
				return fmt.Errorf("export: %w", err)
			}
			dest := out
			if out == "-" {
				dest = "stdout"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d of %d records to %s\n", wrote, read, dest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "-", `file to write ("-" is stdout; .gz is gzipped)`)
	f.StringVar(&since, "since", "", "only records from this time on (RFC 3339, or a duration before now: 2h)")
	f.StringVar(&until, "until", "", "only records before this time (RFC 3339, or a duration before now)")
	f.StringArrayVar(&filters, "filter", nil, "keep records matching key=value[,key=value...]; key agent, priority, model or op (repeatable)")
	return cmd
}

func newCaptureImport(path *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Publish a capture file's records into HERD_CAPTURE, keeping their original times",
		Long: `Publish the records of a JSON-lines capture file (from herd capture export or
herd loadgen; "-" is stdin, .gz is gunzipped) into HERD_CAPTURE, so a capture
moves between machines. Each record keeps its original time, priority, agent,
model and body. A line that is not a record is reported with its number and
skipped; the command then fails after importing the rest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := connect(cmd, *path, "herd-capture-import")
			if err != nil {
				return err
			}
			defer s.nc.Close()
			ctx := cmd.Context()
			if _, err := s.captureStream(ctx); err != nil {
				return err
			}
			in, err := capture.OpenFile(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer func() { _ = in.Close() }()
			n, rejected, err := importRecords(ctx, capture.NewReader(in), capture.NewPublisher(s.js, 0), cmd.ErrOrStderr(), args[0])
			if err != nil {
				return fmt.Errorf("import %s: %w (%d records imported)", args[0], err, n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d records from %s into %s\n", n, args[0], wire.StreamCapture)
			if rejected > 0 {
				return fmt.Errorf("%d bad lines rejected (listed above)", rejected)
			}
			return nil
		},
	}
	return cmd
}

// importRecords publishes what rd reads, reporting each bad line on
// stderr and going on; it returns how many records were acknowledged and
// how many lines were rejected.
func importRecords(ctx context.Context, rd *capture.Reader, pub *capture.Publisher, stderr io.Writer, name string) (int, int, error) {
	prog := newProgress(stderr, "imported")
	rejected := 0
	for {
		rec, err := rd.Next()
		switch {
		case errors.Is(err, io.EOF):
			err := pub.Flush(ctx)
			return pub.Acked(), rejected, err
		case errors.Is(err, capture.ErrBadRecord):
			rejected++
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			continue
		case err != nil:
			_ = pub.Flush(ctx) // what was read before stays imported
			return pub.Acked(), rejected, err
		}
		if err := pub.Publish(ctx, &rec); err != nil {
			return pub.Acked(), rejected, fmt.Errorf("line %d: %w", rd.Line(), err)
		}
		prog.update(pub.Acked())
	}
}

// progress prints a running count on stderr at most once a second, for
// large exports and imports.
type progress struct {
	w    io.Writer
	verb string
	last time.Time
}

func newProgress(w io.Writer, verb string) *progress {
	return &progress{w: w, verb: verb, last: time.Now()}
}

func (p *progress) update(n int) {
	if time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "%s %d records...\n", p.verb, n)
}

// parseWhen reads an RFC 3339 time or a duration before now; "" is the
// zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-03-01T12:00:00Z) nor a duration before now (90m)", s)
}
