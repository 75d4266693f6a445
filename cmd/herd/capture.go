package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/replay"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/wire"
)

func init() { register(newCapture) }

var (
	// errNoCaptureStream is returned when HERD_CAPTURE does not exist.
	errNoCaptureStream = errors.New("stream " + wire.StreamCapture + " does not exist: run herd up or a dispatcher first")
	// errNoControl is returned when herd_control does not exist.
	errNoControl = errors.New("bucket " + wire.BucketControl + " does not exist: run herd up or a dispatcher first")
)

// publishWindow is how many records import and loadgen --stream publish
// before waiting for their acknowledgements.
const publishWindow = 256

// maxLine is the longest capture line import reads (as capture.ReadJSONL).
const maxLine = 16 << 20

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

// session is a command's configuration and JetStream connection.
type session struct {
	cfg config.Config
	nc  *nats.Conn
	js  jetstream.JetStream
}

// connect loads the configuration (with --nats) and connects to NATS.
func connect(cmd *cobra.Command, path, name string) (*session, error) {
	c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
	if err != nil {
		return nil, &exitError{2, err}
	}
	_ = log.Sync()
	nc, err := stack.Connect(c, name, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s (is herd up running, or --nats set?): %w", c.NATS.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &session{cfg: c, nc: nc, js: js}, nil
}

// captureStream returns HERD_CAPTURE, or errNoCaptureStream.
func (s *session) captureStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := s.js.Stream(ctx, wire.StreamCapture)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, errNoCaptureStream
	case err != nil:
		return nil, s.jsError("stream "+wire.StreamCapture, err)
	}
	return st, nil
}

// control returns the herd_control bucket, or errNoControl.
func (s *session) control(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, wire.BucketControl)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, errNoControl
	case err != nil:
		return nil, s.jsError("bucket "+wire.BucketControl, err)
	}
	return kv, nil
}

// jsError explains a failure to open what: JetStream off on the server
// herd was pointed at, or the error itself.
func (s *session) jsError(what string, err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return fmt.Errorf("JetStream is not enabled on %s: run herd up or point --nats at herd's server", s.cfg.NATS.URL)
	}
	return fmt.Errorf("%s: %w", what, err)
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
				info.State.Msgs, iec(info.State.Bytes), ageLimit(info.Config.MaxAge), sizeLimit(info.Config.MaxBytes))
			if info.State.Msgs > 0 {
				first, ferr := recordTime(ctx, st, info.State.FirstSeq)
				last, lerr := recordTime(ctx, st, info.State.LastSeq)
				if err := errors.Join(ferr, lerr); err != nil {
					return err
				}
				fmt.Fprintf(out, "records      first %s, last %s\n", first.UTC().Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano))
			}
			if metricsURL == "" {
				metricsURL = defaultMetricsURL(s.cfg.HTTP.Listen)
			}
			if metricsURL == "" || metricsURL == "none" {
				return nil
			}
			m, err := scrapeCapture(ctx, metricsURL)
			if err != nil {
				fmt.Fprintf(out, "dispatcher   counters not available: %v\n", err)
				return nil
			}
			state := "off"
			if m.enabled {
				state = "on"
			}
			fmt.Fprintf(out, "dispatcher   %d recorded, %d dropped, capture %s (%s)\n", m.written, m.dropped, state, metricsURL)
			return nil
		},
	}
	cmd.Flags().StringVar(&metricsURL, "metrics", "", `the dispatcher's /metrics URL (default from http.listen; "none" skips it)`)
	return cmd
}

// recordTime returns the original time of the record at seq, or its
// stored time when the message is not a record.
func recordTime(ctx context.Context, st jetstream.Stream, seq uint64) (time.Time, error) {
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return time.Time{}, fmt.Errorf("read record %d: %w", seq, err)
	}
	var rec capture.Record
	if json.Unmarshal(m.Data, &rec) == nil && !rec.Time.IsZero() {
		return rec.Time, nil
	}
	return m.Time, nil
}

// defaultMetricsURL is the /metrics of the http.listen address, reached on
// loopback when it listens on every interface.
func defaultMetricsURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics"
}

type captureMetrics struct {
	written, dropped int64
	enabled          bool
}

// scrapeCapture reads the dispatcher's capture counters from a Prometheus
// text endpoint.
func scrapeCapture(ctx context.Context, url string) (captureMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return captureMetrics{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return captureMetrics{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return captureMetrics{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var m captureMetrics
	found := false
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "herd_capture_records_total":
			m.written, found = int64(v), true
		case "herd_capture_dropped_total":
			m.dropped = int64(v)
		case "herd_capture_enabled":
			m.enabled = v == 1
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !found {
		return m, fmt.Errorf("%s has no herd_capture metrics (not a dispatcher?)", url)
	}
	return m, nil
}

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
			w, err := createOutput(cmd, out)
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
			in, err := openInput(cmd, args[0])
			if err != nil {
				return err
			}
			defer func() { _ = in.Close() }()
			stderr := cmd.ErrOrStderr()
			pub := &captureWriter{js: s.js}
			prog := newProgress(stderr, "imported")
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, 0, 64<<10), maxLine)
			line, rejected := 0, 0
			for sc.Scan() {
				line++
				if len(bytes.TrimSpace(sc.Bytes())) == 0 {
					continue
				}
				rec, err := decodeRecord(sc.Bytes())
				if err != nil {
					rejected++
					fmt.Fprintf(stderr, "%s: line %d: %v\n", args[0], line, err)
					continue
				}
				if err := pub.write(ctx, &rec); err != nil {
					return fmt.Errorf("import %s: line %d: %w (%d records imported)", args[0], line, err, pub.acked)
				}
				prog.update(pub.acked)
			}
			if err := sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					err = fmt.Errorf("longer than %d bytes", maxLine)
				}
				_ = pub.flush(ctx)
				return fmt.Errorf("import %s: line %d: %w (%d records imported)", args[0], line+1, err, pub.acked)
			}
			if err := pub.flush(ctx); err != nil {
				return fmt.Errorf("import %s: %w (%d records imported)", args[0], err, pub.acked)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d records from %s into %s\n", pub.acked, args[0], wire.StreamCapture)
			if rejected > 0 {
				return fmt.Errorf("%d bad lines rejected (listed above)", rejected)
			}
			return nil
		},
	}
	return cmd
}

// decodeRecord decodes one capture line and checks that it can be
// published and replayed.
func decodeRecord(line []byte) (capture.Record, error) {
	var rec capture.Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return rec, fmt.Errorf("%w: %v", capture.ErrBadRecord, err)
	}
	switch {
	case rec.Time.IsZero():
		return rec, fmt.Errorf("%w: no time (\"t\")", capture.ErrBadRecord)
	case !rec.Priority.Valid():
		return rec, fmt.Errorf("%w: priority %q is not high, normal or low", capture.ErrBadRecord, rec.Priority)
	case !wire.ValidToken(rec.Agent):
		return rec, fmt.Errorf("%w: agent %q is not 1-128 characters of A-Z a-z 0-9 _ = -", capture.ErrBadRecord, rec.Agent)
	case len(rec.Body) == 0 || string(rec.Body) == "null":
		return rec, fmt.Errorf("%w: no body", capture.ErrBadRecord)
	}
	return rec, nil
}

// captureWriter publishes records into HERD_CAPTURE, waiting for the
// acknowledgements of every publishWindow records. It is not safe for
// concurrent use.
type captureWriter struct {
	js      jetstream.JetStream
	pending []jetstream.PubAckFuture
	acked   int
}

// write publishes rec; it blocks while a window of acknowledgements is
// outstanding and returns the first publish error.
func (w *captureWriter) write(ctx context.Context, rec *capture.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m := nats.NewMsg(rec.Subject())
	m.Data = b
	f, err := w.js.PublishMsgAsync(m, jetstream.WithExpectStream(wire.StreamCapture))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	w.pending = append(w.pending, f)
	if len(w.pending) >= publishWindow {
		return w.flush(ctx)
	}
	return nil
}

// flush waits for every outstanding acknowledgement.
func (w *captureWriter) flush(ctx context.Context) error {
	defer func() { w.pending = w.pending[:0] }()
	for _, f := range w.pending {
		select {
		case <-f.Ok():
			w.acked++
		case err := <-f.Err():
			return fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
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

// createOutput opens name for writing ("-" is the command's stdout; a name
// ending in .gz is gzipped). Closing flushes it.
func createOutput(cmd *cobra.Command, name string) (io.WriteCloser, error) {
	if name == "-" {
		return &bufferedFile{Writer: bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10)}, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, err
	}
	bf := &bufferedFile{Writer: bufio.NewWriterSize(f, 256<<10), closers: []io.Closer{f}}
	if strings.HasSuffix(name, ".gz") {
		gz := gzip.NewWriter(bf.Writer)
		return &bufferedFile{Writer: bufio.NewWriterSize(gz, 256<<10), closers: []io.Closer{gz, bf}}, nil
	}
	return bf, nil
}

// bufferedFile flushes its buffer, then closes what lies beneath in order.
type bufferedFile struct {
	*bufio.Writer
	closers []io.Closer
}

func (b *bufferedFile) Close() error {
	err := b.Flush()
	for _, c := range b.closers {
		err = errors.Join(err, c.Close())
	}
	return err
}

// openInput opens name for reading ("-" is the command's stdin; a name
// ending in .gz is gunzipped).
func openInput(cmd *cobra.Command, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".gz") {
		return f, nil
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{gz, f}, nil
}

// iec formats a byte count with binary units.
func iec(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
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
	return "up to " + iec(uint64(n))
}
