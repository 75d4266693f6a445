package live

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/window"
	"github.com/sutazai/herd/internal/wire"
)

// Config sizes what the collector keeps.
type Config struct {
	// History is how far back the time series reach. Default 120s.
	History time.Duration `koanf:"history"`
	// Span is what the tiles (throughput, error rate, latency, cache hit
	// rate, batch fill) average over. Default 10s.
	Span time.Duration `koanf:"span"`
	// QueuePoll is how often the HERD_REQ consumers are asked for their
	// pending requests. Default 2s.
	QueuePoll time.Duration `koanf:"queue_poll"`
	// Decisions is how many recent decisions are kept. Default 20.
	Decisions int `koanf:"decisions"`
	// WorkerStale is how long a worker is counted after its last
	// heartbeat. Default 30s.
	WorkerStale time.Duration `koanf:"worker_stale"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{History: 120 * time.Second, Span: 10 * time.Second, QueuePoll: 2 * time.Second,
		Decisions: 20, WorkerStale: 30 * time.Second}
}

// Validate returns an error wrapping ErrInvalidConfig for a setting that
// cannot work.
func (c Config) Validate() error {
	switch {
	case c.History < 2*time.Second || c.History > time.Hour:
		return fmt.Errorf("%w: history must be 2s to 1h, not %v", ErrInvalidConfig, c.History)
	case c.Span < time.Second || c.Span > c.History:
		return fmt.Errorf("%w: span must be 1s to history, not %v", ErrInvalidConfig, c.Span)
	case c.QueuePoll < 100*time.Millisecond:
		return fmt.Errorf("%w: queue_poll must be at least 100ms, not %v", ErrInvalidConfig, c.QueuePoll)
	case c.Decisions < 1 || c.Decisions > 1000:
		return fmt.Errorf("%w: decisions must be 1 to 1000, not %d", ErrInvalidConfig, c.Decisions)
	case c.WorkerStale <= 0:
		return fmt.Errorf("%w: worker_stale must be positive, not %v", ErrInvalidConfig, c.WorkerStale)
	}
	return nil
}

// Snapshot is what the page shows at one time. Snapshots returned by
// Collector.Snapshot share their slices with other callers: do not modify
// them.
type Snapshot struct {
	// At is when the snapshot was taken.
	At time.Time `json:"at"`
	// SpanSeconds is what the tiles average over.
	SpanSeconds float64 `json:"span_seconds"`
	// Throughput is answered requests per second; ErrorsPerSecond errors
	// per second; ErrorRate errors over all outcomes.
	Throughput      float64 `json:"throughput"`
	ErrorsPerSecond float64 `json:"errors_per_second"`
	ErrorRate       float64 `json:"error_rate"`
	// P50Ms, P95Ms and P99Ms are end-to-end latency percentiles.
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	// CacheHitRate is (hit + coalesced) over answered.
	CacheHitRate float64 `json:"cache_hit_rate"`
	// BatchFill is the mean fill of recent batches, 0 to 1.
	BatchFill float64 `json:"batch_fill"`
	// Queues holds the pending requests per priority, high first.
	Queues []Queue `json:"queues"`
	// Series holds one point a second, oldest first, up to History.
	Series []Point `json:"series"`
	// Breakers holds the latest breaker decision per model, by model.
	Breakers []Breaker `json:"breakers"`
	// Budget holds the capacity per model, by model.
	Budget []Budget `json:"budget"`
	// Decisions holds the recent decisions, newest first.
	Decisions []Decision `json:"decisions"`
	// Levels are each priority's service level over Span against its
	// targets (the optimizer's, else slo.Default), high first: what the
	// page colours.
	Levels []Level `json:"levels"`
	// Doors are the requests per second over Span by door (nats,
	// ollama-http, openai-http), NATS first.
	Doors []DoorRate `json:"doors"`
	// Events counts the events received since the collector started.
	Events int64 `json:"events"`
}

// Queue is a priority's request queue.
type Queue struct {
	Priority string `json:"priority"`
	// Pending is the number of requests not yet delivered to a
	// dispatcher; InFlight the number delivered and not yet acknowledged.
	Pending  uint64 `json:"pending"`
	InFlight int    `json:"in_flight"`
}

// Point is one second of the time series.
type Point struct {
	// T is the end of the second, in Unix milliseconds.
	T int64 `json:"t"`
	// Answered and Errors count the outcomes received in the second.
	Answered int64 `json:"answered"`
	Errors   int64 `json:"errors"`
	// P50Ms, P95Ms and P99Ms are the latency percentiles over Span at T.
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	// High, Normal and Low are the pending requests per priority as last
	// polled.
	High   uint64 `json:"high"`
	Normal uint64 `json:"normal"`
	Low    uint64 `json:"low"`
}

// Breaker is a model's breaker as last decided.
type Breaker struct {
	Model    string    `json:"model"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Fallback string    `json:"fallback,omitempty"`
	At       time.Time `json:"at"`
}

// Budget is the capacity serving a model.
type Budget struct {
	Model string `json:"model"`
	// Workers counts the live workers serving it; Slots, Busy and
	// CPUBudget sum theirs.
	Workers   int     `json:"workers"`
	Slots     int     `json:"slots"`
	Busy      int     `json:"busy"`
	CPUBudget float64 `json:"cpu_budget"`
}

// Decision is one message on herd.events.>.
type Decision struct {
	// At is when it was received.
	At time.Time `json:"at"`
	// Kind is the subject token after herd.events (breaker, ...).
	Kind  string `json:"kind"`
	Model string `json:"model,omitempty"`
	// State and Reason are the message's state and reason fields, when
	// present.
	State  string `json:"state,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Detail is the message, shortened to 300 bytes.
	Detail string `json:"detail"`
}

// Level is one priority's service level against its targets.
type Level struct {
	Priority string `json:"priority"`
	// Count is the outcomes over Span; ErrorRate the share of them that
	// count against the error rate (slo.IsError).
	Count     int64   `json:"count"`
	ErrorRate float64 `json:"error_rate"`
	P95Ms     float64 `json:"p95_ms"`
	P99Ms     float64 `json:"p99_ms"`
	// TargetP95Ms, TargetP99Ms and TargetErrorRate are the targets.
	TargetP95Ms     float64 `json:"target_p95_ms"`
	TargetP99Ms     float64 `json:"target_p99_ms"`
	TargetErrorRate float64 `json:"target_error_rate"`
	// Met is false when a target is missed (Misses says which); true with
	// no outcomes.
	Met    bool     `json:"met"`
	Misses []string `json:"misses,omitempty"`
}

// second accumulates the events of the current second.
type second struct {
	answered, errors, hits, coalesced int64
	batches                           int64
	fill                              float64
	// outcomes and failed count each priority's outcomes and those that
	// count against its error rate.
	outcomes, failed [3]int64
	// http counts the HTTP doors' asks in the second, by door.
	http map[string]float64
}

// workerState is a worker's last heartbeat.
type workerState struct {
	ev   events.Worker
	seen time.Time
}

// Collector keeps the rolling state of the live page. Create it with New,
// run it with Run; Snapshot and the handler are safe for concurrent use.
type Collector struct {
	cfg Config
	nc  *nats.Conn
	log *zap.Logger
	// now is the clock and every how often Run closes a second; test
	// seams.
	now   func() time.Time
	every time.Duration

	// done is closed when Run returns, to end event streams.
	done     chan struct{}
	doneOnce sync.Once

	mu sync.Mutex // guards everything below
	// win holds the latency windows.
	win *window.Windows
	// cur accumulates the current second; past holds finished seconds,
	// oldest first, up to History.
	cur    second
	past   []second
	series []Point
	queues [3]Queue
	// breakers by model; workers by id.
	breakers  map[string]Breaker
	workers   map[string]workerState
	decisions []Decision // newest last
	events    int64
	snap      Snapshot
	// targets are the service-level targets (herd_control's slo key).
	targets slo.Config
	// gather reads the HTTP doors' counter (CountDoors); httpTotal is
	// what it read at the last second.
	gather    prometheus.Gatherer
	httpTotal map[string]float64
}

// New returns a collector reading from nc. It does not subscribe until
// Run. If cfg is invalid, an error wrapping ErrInvalidConfig is returned.
func New(nc *nats.Conn, cfg Config, log *zap.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	win, err := window.New(window.Config{Window: cfg.Span, Buckets: max(1, int(cfg.Span/time.Second)),
		SignificantFigures: 2, Retention: cfg.Span})
	if err != nil {
		return nil, err
	}
	c := &Collector{
		cfg: cfg, nc: nc, log: log.Named("live"), now: time.Now, every: time.Second, done: make(chan struct{}),
		win: win, breakers: map[string]Breaker{}, workers: map[string]workerState{}, targets: slo.Default(),
	}
	for i, p := range wire.Priorities {
		c.queues[i].Priority = string(p)
	}
	c.snap = c.snapshotLocked(c.now())
	c.snap.Levels = c.levelsLocked([3]window.Stats{})
	return c, nil
}

// Run subscribes to herd.metrics.> and herd.events.>, watches breaker
// decisions in herd_control when the bucket exists, polls the request
// queues, and closes a point of the time series every second. It blocks
// until ctx ends and returns nil then, or an error when it cannot
// subscribe.
func (c *Collector) Run(ctx context.Context) error {
	defer c.doneOnce.Do(func() { close(c.done) })
	msub, err := c.nc.Subscribe(wire.MetricsPrefix+".>", c.onMetric)
	if err != nil {
		return fmt.Errorf("subscribe metrics: %w", err)
	}
	defer func() { _ = msub.Unsubscribe() }()
	esub, err := c.nc.Subscribe(wire.EventsPrefix+".>", c.onEvent)
	if err != nil {
		return fmt.Errorf("subscribe events: %w", err)
	}
	defer func() { _ = esub.Unsubscribe() }()
	for _, s := range []*nats.Subscription{msub, esub} {
		// A slow page must not slow NATS: drop rather than buffer forever.
		_ = s.SetPendingLimits(65536, 64<<20)
	}

	js, err := jetstream.New(c.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.watchBreakers(ctx, js) })
	wg.Go(func() { c.pollQueues(ctx, js) })

	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.tick(c.now())
		}
	}
}

// Done is closed when Run has returned.
func (c *Collector) Done() <-chan struct{} { return c.done }

// Snapshot returns the state as of the last second.
func (c *Collector) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

func (c *Collector) onMetric(m *nats.Msg) {
	// herd.metrics.<kind>.<...>
	rest, ok := strings.CutPrefix(m.Subject, wire.MetricsPrefix+".")
	if !ok {
		return
	}
	kind, _, _ := strings.Cut(rest, ".")
	now := c.now()
	switch kind {
	case "req":
		var e events.Request
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		c.observe(e, now)
	case "batch":
		var e events.Batch
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		c.mu.Lock()
		c.events++
		c.cur.batches++
		c.cur.fill += min(max(e.Fill, 0), 1)
		c.mu.Unlock()
	case "worker":
		var e events.Worker
		if json.Unmarshal(m.Data, &e) != nil || e.ID == "" {
			return
		}
		c.mu.Lock()
		c.events++
		c.workers[e.ID] = workerState{ev: e, seen: now}
		c.mu.Unlock()
	default:
		c.mu.Lock()
		c.events++
		c.mu.Unlock()
	}
}

// observe counts a request outcome received at now.
func (c *Collector) observe(e events.Request, now time.Time) {
	o := optimizer.Obs(e)
	o.At = now
	if o.Status == 0 {
		o.Status = 200
	}
	c.win.Observe(o)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	if i := o.Priority.Index(); i >= 0 && i < len(c.cur.outcomes) {
		c.cur.outcomes[i]++
		if slo.IsError(o.Status) {
			c.cur.failed[i]++
		}
	}
	if o.Status >= 400 {
		c.cur.errors++
		return
	}
	c.cur.answered++
	switch e.Cache {
	case wire.CacheHit:
		c.cur.hits++
	case wire.CacheCoalesced:
		c.cur.coalesced++
	}
}

func (c *Collector) onEvent(m *nats.Msg) {
	rest, ok := strings.CutPrefix(m.Subject, wire.EventsPrefix+".")
	if !ok {
		return
	}
	kind, modelTok, _ := strings.Cut(rest, ".")
	var f struct {
		Model  string    `json:"model"`
		State  string    `json:"state"`
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	}
	_ = json.Unmarshal(m.Data, &f)
	if f.Model == "" && modelTok != "" {
		if mdl, err := wire.DecodeModel(modelTok); err == nil {
			f.Model = mdl
		}
	}
	detail := string(m.Data)
	if len(detail) > 300 {
		detail = detail[:300] + "…"
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events++
	c.decisions = append(c.decisions, Decision{At: now, Kind: kind, Model: f.Model, State: f.State,
		Reason: f.Reason, Detail: detail})
	if n := len(c.decisions) - c.cfg.Decisions; n > 0 {
		c.decisions = slices.Delete(c.decisions, 0, n)
	}
	if kind == "breaker" && f.Model != "" && f.State != "" {
		var b control.Breaker
		_ = json.Unmarshal(m.Data, &b)
		c.setBreakerLocked(b, f.Model)
	}
}

func (c *Collector) setBreakerLocked(b control.Breaker, model string) {
	if old, ok := c.breakers[model]; ok && !b.At.IsZero() && b.At.Before(old.At) {
		return // an older decision, e.g. the KV watch's initial value
	}
	c.breakers[model] = Breaker{Model: model, State: b.State, Reason: b.Reason, Fallback: b.Fallback, At: b.At}
}

// watchBreakers follows breakers.> and the service-level targets (slo)
// in herd_control; it returns at once when the bucket cannot be opened
// (herd not provisioned).
func (c *Collector) watchBreakers(ctx context.Context, js jetstream.JetStream) {
	kv, err := js.KeyValue(ctx, wire.BucketControl)
	if err != nil {
		c.log.Info("no breaker watch", zap.String("bucket", wire.BucketControl), zap.Error(err))
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		provision.Watch(ctx, kv, slo.ControlKey, func(e jetstream.KeyValueEntry) {
			t := slo.Default()
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &t) != nil {
				return
			}
			c.mu.Lock()
			c.targets = t
			c.mu.Unlock()
		})
	})
	provision.Watch(ctx, kv, control.BreakerPrefix+">", func(e jetstream.KeyValueEntry) {
		model, ok := control.ModelFromBreakerKey(e.Key())
		if !ok {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if e.Operation() != jetstream.KeyValuePut {
			delete(c.breakers, model)
			return
		}
		var b control.Breaker
		if json.Unmarshal(e.Value(), &b) != nil || b.State == "" {
			return
		}
		c.setBreakerLocked(b, model)
	})
}

// pollQueues asks the HERD_REQ priority consumers for their pending
// requests every QueuePoll until ctx ends.
func (c *Collector) pollQueues(ctx context.Context, js jetstream.JetStream) {
	t := time.NewTicker(c.cfg.QueuePoll)
	defer t.Stop()
	warned := false
	for {
		err := c.pollOnce(ctx, js)
		if err != nil && !warned && ctx.Err() == nil {
			c.log.Warn("poll request queues", zap.Error(err))
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Collector) pollOnce(ctx context.Context, js jetstream.JetStream) error {
	var errs []error
	for i, p := range wire.Priorities {
		qctx, cancel := context.WithTimeout(ctx, c.cfg.QueuePoll)
		info, err := js.Consumer(qctx, wire.StreamReq, wire.ReqConsumerName(p))
		var ci *jetstream.ConsumerInfo
		if err == nil {
			ci, err = info.Info(qctx)
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer %s: %w", wire.ReqConsumerName(p), err))
			continue
		}
		c.mu.Lock()
		c.queues[i].Pending = ci.NumPending
		c.queues[i].InFlight = ci.NumAckPending
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// tick closes the current second at now and takes a snapshot.
func (c *Collector) tick(now time.Time) {
	st := c.win.Stats(window.Key{}, now)
	var prio [3]window.Stats
	for i, p := range wire.Priorities {
		prio[i] = c.win.Stats(window.Key{Priority: p}, now)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The HTTP doors' asks in this second; the first reading is only
	// where counting starts.
	if total := httpAsks(c.gather); total != nil {
		if c.httpTotal != nil {
			c.cur.http = map[string]float64{}
			for d, n := range total {
				if n > c.httpTotal[d] {
					c.cur.http[d] = n - c.httpTotal[d]
				}
			}
		}
		c.httpTotal = total
	}
	keep := int(c.cfg.History / time.Second)
	c.past = append(c.past, c.cur)
	if n := len(c.past) - keep; n > 0 {
		c.past = slices.Delete(c.past, 0, n)
	}
	c.series = append(c.series, Point{
		T: now.UnixMilli(), Answered: c.cur.answered, Errors: c.cur.errors,
		P50Ms: ms(st.Total.P50), P95Ms: ms(st.Total.P95), P99Ms: ms(st.Total.P99),
		High: c.queues[0].Pending, Normal: c.queues[1].Pending, Low: c.queues[2].Pending,
	})
	if n := len(c.series) - keep; n > 0 {
		c.series = slices.Delete(c.series, 0, n)
	}
	c.cur = second{}
	for id, w := range c.workers {
		if now.Sub(w.seen) > c.cfg.WorkerStale {
			delete(c.workers, id)
		}
	}
	c.win.Advance(now)
	c.snap = c.snapshotLocked(now)
	c.snap.P50Ms, c.snap.P95Ms, c.snap.P99Ms = ms(st.Total.P50), ms(st.Total.P95), ms(st.Total.P99)
	c.snap.Levels = c.levelsLocked(prio)
}

// levelsLocked judges each priority's outcomes over Span and latency
// (prio, by priority index) against the targets; mu must be held.
func (c *Collector) levelsLocked(prio [3]window.Stats) []Level {
	span := min(len(c.past), int(c.cfg.Span/time.Second))
	var n, failed [3]int64
	for _, p := range c.past[len(c.past)-span:] {
		for i := range n {
			n[i] += p.outcomes[i]
			failed[i] += p.failed[i]
		}
	}
	out := make([]Level, 0, len(wire.Priorities))
	for i, p := range wire.Priorities {
		t := c.targets.For(p)
		l := Level{Priority: string(p), Count: n[i], P95Ms: ms(prio[i].Total.P95), P99Ms: ms(prio[i].Total.P99),
			TargetP95Ms: ms(t.P95), TargetP99Ms: ms(t.P99), TargetErrorRate: t.ErrorRate}
		if n[i] > 0 {
			l.ErrorRate = float64(failed[i]) / float64(n[i])
		}
		l.Misses = t.Misses(slo.Measured{Count: n[i], P95: prio[i].Total.P95, P99: prio[i].Total.P99, ErrorRate: l.ErrorRate})
		l.Met = len(l.Misses) == 0
		out = append(out, l)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// snapshotLocked builds a snapshot from the finished seconds; the caller
// holds mu and sets the latency fields.
func (c *Collector) snapshotLocked(now time.Time) Snapshot {
	s := Snapshot{At: now, Events: c.events}
	span := min(len(c.past), int(c.cfg.Span/time.Second))
	var sum second
	http := map[string]float64{}
	for _, p := range c.past[len(c.past)-span:] {
		for d, n := range p.http {
			http[d] += n
		}
		sum.answered += p.answered
		sum.errors += p.errors
		sum.hits += p.hits
		sum.coalesced += p.coalesced
		sum.batches += p.batches
		sum.fill += p.fill
	}
	if span > 0 {
		s.SpanSeconds = float64(span)
		s.Throughput = float64(sum.answered) / float64(span)
		s.ErrorsPerSecond = float64(sum.errors) / float64(span)
	}
	if n := sum.answered + sum.errors; n > 0 {
		s.ErrorRate = float64(sum.errors) / float64(n)
	}
	s.Doors = doorRates(http, sum.answered+sum.errors, span)
	if sum.answered > 0 {
		s.CacheHitRate = float64(sum.hits+sum.coalesced) / float64(sum.answered)
	}
	if sum.batches > 0 {
		s.BatchFill = sum.fill / float64(sum.batches)
	}
	s.Queues = slices.Clone(c.queues[:])
	s.Series = slices.Clone(c.series)
	if s.Series == nil {
		s.Series = []Point{}
	}
	s.Breakers = make([]Breaker, 0, len(c.breakers))
	for _, b := range c.breakers {
		s.Breakers = append(s.Breakers, b)
	}
	slices.SortFunc(s.Breakers, func(a, b Breaker) int { return cmp.Compare(a.Model, b.Model) })
	budget := map[string]*Budget{}
	for _, w := range c.workers {
		for _, m := range w.ev.Models {
			b := budget[m]
			if b == nil {
				b = &Budget{Model: m}
				budget[m] = b
			}
			b.Workers++
			b.Slots += w.ev.Slots
			b.Busy += w.ev.Busy
			b.CPUBudget += w.ev.CPUBudget
		}
	}
	s.Budget = make([]Budget, 0, len(budget))
	for _, b := range budget {
		s.Budget = append(s.Budget, *b)
	}
	slices.SortFunc(s.Budget, func(a, b Budget) int { return cmp.Compare(a.Model, b.Model) })
	s.Decisions = make([]Decision, 0, len(c.decisions))
	for i := len(c.decisions) - 1; i >= 0; i-- {
		s.Decisions = append(s.Decisions, c.decisions[i])
	}
	return s
}
