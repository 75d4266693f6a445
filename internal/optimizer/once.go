package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// Kinds of one-shot report (`optimizer --once --<kind>`); a report of
// several kinds is stored as KindAll.
const (
	KindPerformance = "performance"
	KindBatch       = "batch"
	KindContext     = "context"
	KindBenchmark   = "benchmark"
	KindAll         = "all"
)

// Kinds lists the report kinds in the order they are printed.
var Kinds = []string{KindPerformance, KindBatch, KindContext, KindBenchmark}

// OnceConfig is what a one-shot report looks at and compares with.
type OnceConfig struct {
	// Kinds are the parts to build: performance, batch, context,
	// benchmark. Every report lists herd_control's decisions.
	Kinds []string
	// Window is how far back the request and batch events are read.
	Window time.Duration
	// BatchSize and MaxWait are the dispatcher's settings the batch part
	// recommends on (dispatcher.batch_size, dispatcher.max_wait).
	BatchSize int
	MaxWait   time.Duration
	// Context is the optimizer's num_ctx policy the context part applies
	// to the window's prompts (optimizer.context).
	Context policy.ContextConfig
	// NumCtx is each model's configured num_ctx (models[].num_ctx).
	NumCtx map[string]int
	// Auto is the auto selection's profiles the benchmark part
	// recommends on (dispatcher.auto).
	Auto policy.AutoConfig
}

// OnceReport is the report of `optimizer --once`: the current figures of
// the asked kinds, every decision in herd_control, and the
// recommendations, each with its reason and numbers.
type OnceReport struct {
	// Kind is the report's kind: one of Kinds, or all when it has several.
	Kind string `json:"kind"`
	// At is when it was made; Window how far back it looked.
	At     time.Time     `json:"at"`
	Window time.Duration `json:"window_ns"`

	Performance *Report        `json:"performance,omitempty"`
	Batch       *BatchReport   `json:"batch,omitempty"`
	Context     *ContextReport `json:"context,omitempty"`
	Benchmark   *BenchReport   `json:"benchmark,omitempty"`
	// Decisions are herd_control's current entries, workers'
	// registrations left out (Workers counts them).
	Decisions []ControlEntry `json:"decisions"`
	Workers   int            `json:"workers"`
	// Recommendations are what the parts recommend, changes and keeps.
	Recommendations []Recommendation `json:"recommendations"`
	// Stored is the HERD_REPORTS sequence the report was stored at; 0
	// when it was not stored.
	Stored uint64 `json:"stored,omitempty"`
}

// Recommendation is one setting a report recommends, with why.
type Recommendation struct {
	// Part is the report part that makes it: batch, context or benchmark.
	Part string `json:"part"`
	// Model is the model it is about; empty for herd-wide settings.
	Model string `json:"model,omitempty"`
	// Setting is the configuration key (dispatcher.batch_size) or what
	// the recommendation is about.
	Setting     string `json:"setting"`
	Current     string `json:"current"`
	Recommended string `json:"recommended"`
	// Change says Recommended differs from Current.
	Change  bool               `json:"change"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Once builds the report of cfg.Kinds at now from HERD_METRICS, HERD_BENCH
// and herd_control. It waits on ctx; an error is returned when a source
// cannot be read.
func Once(ctx context.Context, js jetstream.JetStream, cfg OnceConfig, now time.Time) (*OnceReport, error) {
	if cfg.Window < reportBuckets*time.Millisecond {
		return nil, fmt.Errorf("%w: window must be at least %v, not %v", ErrInvalidConfig, reportBuckets*time.Millisecond, cfg.Window)
	}
	for _, k := range cfg.Kinds {
		if !slices.Contains(Kinds, k) {
			return nil, fmt.Errorf("%w: report kind %q is not one of %v", ErrInvalidConfig, k, Kinds)
		}
	}
	r := &OnceReport{Kind: KindAll, At: now, Window: cfg.Window, Decisions: []ControlEntry{}, Recommendations: []Recommendation{}}
	if len(cfg.Kinds) == 1 {
		r.Kind = cfg.Kinds[0]
	}
	want := func(k string) bool { return slices.Contains(cfg.Kinds, k) }
	var reqs []events.Request
	var batches []events.Batch
	if want(KindPerformance) || want(KindBatch) || want(KindContext) {
		filters := []string{requestSubjects + ">"}
		if want(KindBatch) {
			filters = append(filters, batchSubjects+">")
		}
		err := readMetrics(ctx, js, filters, now.Add(-cfg.Window), func(subject string, data []byte) {
			switch {
			case strings.HasPrefix(subject, requestSubjects):
				var e events.Request
				if json.Unmarshal(data, &e) == nil && e.Model != "" {
					reqs = append(reqs, e)
				}
			case strings.HasPrefix(subject, batchSubjects):
				var e events.Batch
				if json.Unmarshal(data, &e) == nil && e.Model != "" {
					batches = append(batches, e)
				}
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if want(KindPerformance) {
		p, err := BuildReport(reqs, cfg.Window, now)
		if err != nil {
			return nil, err
		}
		r.Performance = p
	}
	if want(KindBatch) {
		r.Batch = BuildBatchReport(batches, reqs, cfg.BatchSize, cfg.MaxWait)
		r.Recommendations = append(r.Recommendations, r.Batch.Recommend()...)
	}
	if want(KindContext) {
		r.Context = BuildContextReport(reqs, cfg.Context, cfg.NumCtx, now)
		r.Recommendations = append(r.Recommendations, r.Context.Recommendations...)
	}
	if want(KindBenchmark) {
		b, err := ReadBenchReport(ctx, js, cfg.Auto)
		if err != nil {
			return nil, err
		}
		r.Benchmark = b
		r.Recommendations = append(r.Recommendations, b.Recommendations...)
	}
	entries, workers, err := ReadControl(ctx, js)
	if err != nil {
		return nil, err
	}
	r.Decisions, r.Workers = entries, workers
	if r.Context != nil {
		r.Context.noteDecisions(entries)
	}
	return r, nil
}

// batchSubjects starts the dispatchers' batch events.
var batchSubjects = wire.MetricsPrefix + ".batch."

// readMetrics calls fn with every message of HERD_METRICS on filters
// stored since start, in order, as they were when it began.
func readMetrics(ctx context.Context, js jetstream.JetStream, filters []string, start time.Time, fn func(subject string, data []byte)) error {
	cons, err := js.OrderedConsumer(ctx, wire.StreamMetrics, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
	}
	for done := false; !done; {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			fn(m.Subject(), m.Data())
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
		}
		if n == 0 {
			done = true
		}
	}
	return nil
}

// Store stores r on herd.reports.<kind> in HERD_REPORTS, creating the
// stream from its definition (streams/) when it does not exist yet, and
// sets r.Stored. It waits on ctx for JetStream's acknowledgement.
func (r *OnceReport) Store(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.Stream(ctx, wire.StreamReports); errors.Is(err, jetstream.ErrStreamNotFound) {
		defs, derr := provision.Load(provision.Overrides{})
		if derr != nil {
			return derr
		}
		for _, c := range defs.Streams {
			if c.Name == wire.StreamReports {
				if _, err = js.CreateStream(ctx, c); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
					err = nil
				}
			}
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", wire.StreamReports, err)
		}
	} else if err != nil {
		return fmt.Errorf("stream %s: %w", wire.StreamReports, err)
	}
	r.Stored = 0
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	m := nats.NewMsg(wire.ReportSubject(r.Kind))
	m.Data = data
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return fmt.Errorf("store report in %s: %w", wire.StreamReports, err)
	}
	r.Stored = ack.Sequence
	return nil
}

// LastReport returns the latest report of kind stored in HERD_REPORTS.
func LastReport(ctx context.Context, js jetstream.JetStream, kind string) (*OnceReport, error) {
	st, err := js.Stream(ctx, wire.StreamReports)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", wire.StreamReports, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, wire.ReportSubject(kind))
	if err != nil {
		return nil, fmt.Errorf("last %s report: %w", kind, err)
	}
	var r OnceReport
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("report %d: %w", m.Sequence, err)
	}
	r.Stored = m.Sequence
	return &r, nil
}

// WriteJSON writes the report as indented JSON.
func (r *OnceReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: each part's table, the
// decisions in herd_control and the recommendations.
func (r *OnceReport) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "herd optimizer report (%s) at %s, window %v\n\n", r.Kind, r.At.Format(time.RFC3339), r.Window)
	if r.Performance != nil {
		if err := r.Performance.WriteText(ew); err != nil {
			return err
		}
		fmt.Fprintln(ew)
	}
	if r.Batch != nil {
		r.Batch.writeText(ew)
		fmt.Fprintln(ew)
	}
	if r.Context != nil {
		r.Context.writeText(ew)
		fmt.Fprintln(ew)
	}
	if r.Benchmark != nil {
		r.Benchmark.writeText(ew)
		fmt.Fprintln(ew)
	}
	writeDecisions(ew, r.Decisions, r.Workers, r.At)
	fmt.Fprintln(ew)
	fmt.Fprintf(ew, "recommendations (%d):\n", len(r.Recommendations))
	if len(r.Recommendations) == 0 {
		fmt.Fprintln(ew, "  none: no part with recommendations was asked for")
	}
	for _, x := range r.Recommendations {
		verdict := "keep " + x.Current
		if x.Change {
			verdict = fmt.Sprintf("change %s -> %s", x.Current, x.Recommended)
		}
		model := ""
		if x.Model != "" {
			model = " [" + x.Model + "]"
		}
		fmt.Fprintf(ew, "  %-9s %s%s: %s\n            %s\n", x.Part, x.Setting, model, verdict, x.Reason)
	}
	if r.Stored > 0 {
		fmt.Fprintf(ew, "\nstored in %s as %s, sequence %d\n", wire.StreamReports, wire.ReportSubject(r.Kind), r.Stored)
	}
	return ew.err
}

// errWriter keeps the first write error so a report is written with plain
// Fprintf calls.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// table returns a right-aligned tabwriter on w.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}
