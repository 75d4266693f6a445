package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/window"
	"github.com/sutazai/herd/internal/wire"
)

// reportBuckets is how many slices the report's window is kept in.
const reportBuckets = 100

// Report is the performance report of `optimizer --once --performance`:
// figures per model (Priority "all") and per model and priority, over the
// request events of one window. It decides nothing.
type Report struct {
	// At is when the report was made; Window how far back it looks.
	At     time.Time     `json:"at"`
	Window time.Duration `json:"window_ns"`
	// Events counts the request events read; Late those that fell outside
	// the window.
	Events int64 `json:"events"`
	Late   int64 `json:"late"`
	// Rows are sorted by model, the model's total first.
	Rows []Row `json:"rows"`
}

// Row is one model's (or one model and priority's) figures. Latencies are
// in milliseconds from arrival to answer, over requests not rejected.
type Row struct {
	Model    string `json:"model"`
	Priority string `json:"priority"`
	// Count is every request; Rejected (queue_full, breaker_open), Errors
	// (the model failed) and Truncated (prompt filled num_ctx) are parts.
	Count     int64 `json:"count"`
	Rejected  int64 `json:"rejected"`
	Errors    int64 `json:"errors"`
	Truncated int64 `json:"truncated"`
	// ErrorRate is Errors over requests not rejected.
	ErrorRate float64 `json:"error_rate"`
	// Throughput is requests served per second of the window.
	Throughput float64 `json:"throughput_rps"`
	P50        float64 `json:"p50_ms"`
	P95        float64 `json:"p95_ms"`
	P99        float64 `json:"p99_ms"`
	QueueP95   float64 `json:"queue_p95_ms"`
	// CacheHitRatio is hits over hits, coalesced and misses.
	CacheHitRatio float64 `json:"cache_hit_ratio"`
	// TokensPerSecond is generated tokens per second of the window;
	// GenerationRate per second of Ollama time.
	TokensPerSecond float64 `json:"tokens_per_s"`
	GenerationRate  float64 `json:"generation_tokens_per_s"`
	// PromptP95 is the 95th percentile of prompt tokens.
	PromptP95 int64 `json:"prompt_tokens_p95"`
}

// Performance reads the request events of the last span before now from
// HERD_METRICS (an ordered consumer starting at now-span) and returns their
// report. It waits on ctx; an error is returned when the stream cannot be
// read.
func Performance(ctx context.Context, js jetstream.JetStream, span time.Duration, now time.Time) (*Report, error) {
	if span < reportBuckets*time.Millisecond {
		return nil, fmt.Errorf("%w: window must be at least %v, not %v", ErrInvalidConfig, reportBuckets*time.Millisecond, span)
	}
	start := now.Add(-span)
	cons, err := js.OrderedConsumer(ctx, wire.StreamMetrics, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{requestSubjects + ">"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
	}
	var evs []events.Request
	for done := false; !done; {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var e events.Request
			if json.Unmarshal(m.Data(), &e) == nil && e.Model != "" {
				evs = append(evs, e)
			}
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
		}
		if n == 0 {
			done = true
		}
	}
	return BuildReport(evs, span, now)
}

// BuildReport returns the report of evs over the span before now.
func BuildReport(evs []events.Request, span time.Duration, now time.Time) (*Report, error) {
	w, err := window.New(window.Config{Window: span, Buckets: reportBuckets, SignificantFigures: 3, Retention: span})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	r := &Report{At: now, Window: span}
	for _, e := range evs {
		r.Events++
		if !w.Observe(Obs(e)) {
			r.Late++
		}
	}
	var model string
	for _, k := range w.Keys(now) {
		if k.Model != model {
			model = k.Model
			r.Rows = append(r.Rows, row(k.Model, "all", w.Stats(window.Key{Model: k.Model}, now)))
		}
		r.Rows = append(r.Rows, row(k.Model, string(k.Priority), w.Stats(k, now)))
	}
	return r, nil
}

func row(model, priority string, st window.Stats) Row {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Row{
		Model: model, Priority: priority, Count: st.Count, Rejected: st.Rejected, Errors: st.Errors,
		Truncated: st.Truncated, ErrorRate: st.ErrorRate, Throughput: st.Throughput,
		P50: ms(st.Total.P50), P95: ms(st.Total.P95), P99: ms(st.Total.P99), QueueP95: ms(st.QueueWait.P95),
		CacheHitRatio: st.Cache.HitRatio, TokensPerSecond: st.TokensPerSecond, GenerationRate: st.GenerationRate,
		PromptP95: st.Prompt.P95,
	}
}

// WriteText writes the report as a table.
func (r *Report) WriteText(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "performance over %v to %s: %d request events (%d outside the window)\n",
		r.Window, r.At.Format(time.RFC3339), r.Events, r.Late); err != nil {
		return err
	}
	if len(r.Rows) == 0 {
		_, err := fmt.Fprintln(w, "no requests in the window")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tpriority\trequests\trps\tp50 ms\tp95 ms\tp99 ms\tqueue p95 ms\terrors\terror rate\trejected\tcache hit\ttok/s\tgen tok/s\ttruncated\t")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.1f%%\t%d\t%.1f%%\t%.1f\t%.1f\t%d\t\n",
			x.Model, x.Priority, x.Count, x.Throughput, x.P50, x.P95, x.P99, x.QueueP95, x.Errors,
			100*x.ErrorRate, x.Rejected, 100*x.CacheHitRatio, x.TokensPerSecond, x.GenerationRate, x.Truncated)
	}
	return tw.Flush()
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
