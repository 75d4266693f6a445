package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/window"
	"github.com/sutazai/herd/internal/wire"
)

// ServiceLevel is one priority's requests over the targets' window and
// its targets.
type ServiceLevel struct {
	Priority string `json:"priority"`
	// Count is the outcomes; ErrorRate the share that count against the
	// target (slo.IsError: 5xx and 429).
	Count     int64         `json:"count"`
	P95       time.Duration `json:"p95_ns"`
	P99       time.Duration `json:"p99_ns"`
	ErrorRate float64       `json:"error_rate"`
	Target    slo.Target    `json:"target"`
}

// levels reads the targets in force (herd_control's slo key, written by
// the optimizer; slo.Default when absent) and each priority's outcomes
// over their window from HERD_METRICS.
func (g *Gatherer) levels(ctx context.Context, s *Snapshot) {
	targets := slo.Default()
	if kv, err := g.JS.KeyValue(ctx, wire.BucketControl); err == nil {
		if e, err := kv.Get(ctx, slo.ControlKey); err == nil {
			if err := json.Unmarshal(e.Value(), &targets); err != nil {
				s.LevelsError = fmt.Sprintf("targets: %v", err)
				return
			}
		}
	}
	span := targets.Window
	win, err := window.New(window.Config{Window: span, Buckets: 10, SignificantFigures: 2, Retention: span})
	if err != nil {
		s.LevelsError = err.Error()
		return
	}
	var n, failed [3]int64
	start := s.At.Add(-span)
	err = readRequests(ctx, g.JS, start, func(e events.Request) {
		o := optimizer.Obs(e)
		win.Observe(o)
		if i := o.Priority.Index(); i >= 0 && i < len(n) {
			n[i]++
			if slo.IsError(e.Status) {
				failed[i]++
			}
		}
	})
	if err != nil {
		s.LevelsError = err.Error()
		return
	}
	for i, p := range wire.Priorities {
		st := win.Stats(window.Key{Priority: p}, s.At)
		l := ServiceLevel{Priority: string(p), Count: n[i], P95: st.Total.P95, P99: st.Total.P99, Target: targets.For(p)}
		if n[i] > 0 {
			l.ErrorRate = float64(failed[i]) / float64(n[i])
		}
		s.Levels = append(s.Levels, l)
	}
	s.LevelsWindow = span
}

// readRequests calls fn for each request outcome event in HERD_METRICS
// since start, until it has read them all or ctx ends.
func readRequests(ctx context.Context, js jetstream.JetStream, start time.Time, fn func(events.Request)) error {
	cons, err := js.OrderedConsumer(ctx, wire.StreamMetrics, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.MetricsPrefix + ".req.>"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
	}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			var e events.Request
			if json.Unmarshal(m.Data(), &e) == nil && e.Model != "" {
				fn(e)
			}
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: %w", wire.StreamMetrics, err)
		}
		if got == 0 || done {
			return nil
		}
	}
}

// evalLevels degrades the report while a priority misses a target.
func evalLevels(s *Snapshot, add addFunc) {
	if s.LevelsError != "" {
		add("service levels", Degraded, "cannot read: %s", s.LevelsError)
		return
	}
	for _, l := range s.Levels {
		name := "slo " + l.Priority
		m := slo.Measured{Count: l.Count, P95: l.P95, P99: l.P99, ErrorRate: l.ErrorRate}
		switch misses := l.Target.Misses(m); {
		case l.Count == 0:
			add(name, OK, "no requests in the last %s (targets p95 %s, p99 %s, errors %s)", s.LevelsWindow, l.Target.P95, l.Target.P99, slo.Percent(l.Target.ErrorRate))
		case len(misses) > 0:
			add(name, Degraded, "%d requests in the last %s: %s", l.Count, s.LevelsWindow, joinMisses(misses))
		default:
			add(name, OK, "%d requests in the last %s: p95 %s, p99 %s, errors %s within p95 %s, p99 %s, errors %s", l.Count, s.LevelsWindow,
				l.P95.Round(time.Millisecond), l.P99.Round(time.Millisecond), slo.Percent(l.ErrorRate), l.Target.P95, l.Target.P99, slo.Percent(l.Target.ErrorRate))
		}
	}
}

func joinMisses(m []string) string {
	out := ""
	for i, s := range m {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}
