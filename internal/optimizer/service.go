package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/window"
	"github.com/sutazai/herd/internal/wire"
)

// ConsumerName is the durable consumer the optimizer reads HERD_METRICS with.
const ConsumerName = "optimizer"

// Subjects the optimizer reads and writes.
var (
	callSubjects    = wire.MetricsPrefix + ".call."
	requestSubjects = wire.MetricsPrefix + ".req."
)

// BreakerEventSubject returns the subject a model's breaker transitions are
// announced on: herd.events.breaker.<encoded model>.
func BreakerEventSubject(model string) string {
	return wire.EventsPrefix + ".breaker." + wire.EncodeModel(model)
}

// Service consumes metric events and decides per-model breakers. Build it
// with New and run it with Run.
type Service struct {
	cfg      Config
	nc       *nats.Conn
	control  jetstream.KeyValue
	cons     jetstream.Consumer
	log      *zap.Logger
	m        *metrics
	set      *breaker.Set
	win      *window.Windows
	fallback breaker.Fallback
	ctx      *contexts
	fleet    *fleet
	js       jetstream.JetStream
	// batches is the HERD_BATCH handle of backlogs; used by the Run
	// goroutine only.
	batches jetstream.Stream
	// unwritten are fleet decisions whose write to herd_control failed,
	// by key, written again on the next tick; used by the Run goroutine
	// only.
	unwritten map[string]unwrittenDecision
	// repeats keeps the repeated failures of one request (retries,
	// redeliveries) from counting again for its model's breaker.
	repeats *repeats
	// now is the clock; a test seam.
	now func() time.Time

	applyMu sync.Mutex // serializes decisions so a model's writes keep their order
}

// New checks cfg, creates or updates the durable consumer "optimizer" on
// HERD_METRICS (new messages only, explicit ack) and opens herd_control.
// It waits on ctx for JetStream. If cfg is invalid, an error wrapping
// ErrInvalidConfig is returned; if the stream or bucket is missing, the
// JetStream error (provision first).
func New(ctx context.Context, cfg Config, nc *nats.Conn, log *zap.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	set, err := breaker.NewSet(cfg.Breaker, cfg.fallbacks())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	win, err := window.New(cfg.Window)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, wire.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", wire.BucketControl, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, wire.StreamMetrics, jetstream.ConsumerConfig{
		Durable:        ConsumerName,
		Description:    "the optimizer: breaker outcomes, request windows and worker loads",
		FilterSubjects: []string{callSubjects + ">", requestSubjects + ">", events.WorkerSubjects + ">"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        30 * time.Second,
		MaxAckPending:  10000,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", ConsumerName, wire.StreamMetrics, err)
	}
	// `nats micro ls` lists it until ctx ends (internal/discovery).
	if err := discovery.Register(ctx, nc, discovery.Optimizer, reg); err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, nc: nc, control: kv, cons: cons, log: log.Named("optimizer"), m: newMetrics(reg),
		set: set, repeats: newRepeats(cfg.Breaker.Window, maxRepeats), win: win, fallback: cfg.fallbacks(), now: time.Now,
		ctx: newContexts(cfg.Context, cfg.Window.Window), fleet: newFleet(cfg), js: js,
	}, nil
}

// Run consumes metric events and advances the breakers every Config.Tick
// until ctx ends; then it stops consuming and returns nil. At start it
// resets breaker decisions left open by an earlier optimizer, whose state
// it does not know: the next outcomes decide again. It returns an error
// only when consuming cannot start.
func (s *Service) Run(ctx context.Context) error {
	s.reset(ctx)
	s.loadFleet(ctx)
	s.put(slo.ControlKey, s.cfg.SLO.Marshal())
	cc, err := s.cons.Consume(s.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
			s.log.Warn("consume metrics", zap.Error(err))
		}
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", wire.StreamMetrics, err)
	}
	s.log.Info("optimizing", zap.Duration("breaker_window", s.cfg.Breaker.Window),
		zap.Duration("cool_down", s.cfg.Breaker.CoolDown), zap.Int("fallbacks", len(s.fallback)))
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cc.Stop()
			<-cc.Closed()
			s.log.Info("stopped")
			return nil
		case <-t.C:
			now := s.now()
			s.apply(s.set.Advance(now))
			s.win.Advance(now)
			s.applyContexts(s.ctx.decide(now))
			s.decideFleet(now)
		}
	}
}

// Windows returns the request windows the service keeps, for reports.
func (s *Service) Windows() *window.Windows { return s.win }

// Breakers returns every breaker's status at now.
func (s *Service) Breakers(now time.Time) []breaker.Status { return s.set.Snapshot(now) }

// handle observes one metric event and acks it, or terminates it when it
// cannot be decoded: the one place events map to JetStream actions.
func (s *Service) handle(m jetstream.Msg) {
	if err := s.observe(m.Subject(), m.Data()); err != nil {
		s.m.events.WithLabelValues("bad").Inc()
		s.log.Warn("drop metric event", zap.String("subject", m.Subject()), zap.Error(err))
		_ = m.Term()
		return
	}
	_ = m.Ack()
}

// observe feeds one event to the breakers or the windows. An event older
// than the breaker window (left from before a restart) is not a breaker
// outcome any more, and neither is a call's failure when the same request
// already failed within the window (its retries and redeliveries): a
// breaker judges the model, not one request.
func (s *Service) observe(subject string, data []byte) error {
	now := s.now()
	switch {
	case strings.HasPrefix(subject, callSubjects):
		var e events.Call
		if err := json.Unmarshal(data, &e); err != nil || e.Model == "" {
			return fmt.Errorf("%w: call: %v", ErrBadEvent, err)
		}
		s.m.events.WithLabelValues("call").Inc()
		ok, counts := CallOutcome(e)
		if !counts || (!e.At.IsZero() && e.At.Before(now.Add(-s.cfg.Breaker.Window))) {
			return nil
		}
		if !s.repeats.counts(e.Model, e.Request, ok, now) {
			s.m.repeats.WithLabelValues(e.Model).Inc()
			s.log.Debug("repeated failure of one request not counted again", zap.String("model", e.Model),
				zap.String("request_id", e.Request), zap.String("code", e.Code))
			return nil
		}
		s.apply(s.set.Record(e.Model, now, ok))
	case strings.HasPrefix(subject, requestSubjects):
		var e events.Request
		if err := json.Unmarshal(data, &e); err != nil || e.Model == "" {
			return fmt.Errorf("%w: request: %v", ErrBadEvent, err)
		}
		s.m.events.WithLabelValues("req").Inc()
		s.win.Observe(Obs(e))
		s.ctx.observe(e, now)
		s.fleet.observeRequest(e)
	case strings.HasPrefix(subject, events.WorkerSubjects):
		var e events.Worker
		if err := json.Unmarshal(data, &e); err != nil || e.ID == "" {
			return fmt.Errorf("%w: worker: %v", ErrBadEvent, err)
		}
		s.m.events.WithLabelValues("worker").Inc()
		if e.MemTotalBytes > 0 {
			s.m.memoryUse.WithLabelValues(e.ID).Set(float64(e.MemUsedBytes) / float64(e.MemTotalBytes))
		}
		s.fleet.observeWorker(e)
	}
	return nil
}

// CallOutcome says whether an Ollama call counts for its model's breaker
// (counts) and whether it succeeded (ok). A failure counts when its code
// is backend_unavailable, internal or model_not_found, or unknown; other
// codes (invalid_request: the caller's input) are not the model's fault.
func CallOutcome(e events.Call) (ok, counts bool) {
	if e.OK {
		return true, true
	}
	switch wire.Code(e.Code) {
	case wire.CodeBackendUnavailable, wire.CodeInternal, wire.CodeModelNotFound, "":
		return false, true
	}
	return false, false
}

// Obs turns a request event into a window observation.
func Obs(e events.Request) window.Obs {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	return window.Obs{
		At: e.At, Model: e.Model, Priority: wire.Priority(e.Priority),
		QueueWait: ms(e.QueueMs), Total: ms(e.TotalMs), Ollama: ms(e.OllamaMs),
		PromptTokens: e.PromptTok, EvalTokens: e.EvalTok, NumCtx: e.NumCtx,
		Status: e.Status, Code: wire.Code(e.Code), Cache: e.Cache, FromWorker: !e.Dispatcher,
	}
}

// controlState maps a breaker state to its herd_control name.
func controlState(st breaker.State) string {
	switch st {
	case breaker.Open:
		return control.Open
	case breaker.HalfOpen:
		return control.HalfOpen
	}
	return control.Closed
}

// Decision returns the herd_control value of transition t.
func (s *Service) Decision(t breaker.Transition) control.Breaker {
	b := control.Breaker{
		Model: t.Model, State: controlState(t.To), Fallback: s.fallback[t.Model], At: t.At,
		Reason: string(t.Reason),
		Numbers: map[string]float64{
			"requests": float64(t.Numbers.Requests), "failures": float64(t.Numbers.Failures),
			"error_rate": t.Numbers.ErrorRate, "consecutive": float64(t.Numbers.Consecutive),
		},
	}
	if t.To == breaker.Open {
		b.RetryAfter = s.cfg.Breaker.CoolDown
	}
	return b
}

// apply writes, announces, logs and counts each transition. A write that
// fails is logged and counted; the next transition writes the key again.
func (s *Service) apply(ts []breaker.Transition) {
	if len(ts) == 0 {
		return
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for _, t := range ts {
		b := s.Decision(t)
		data := b.Marshal()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.control.Put(ctx, control.BreakerKey(t.Model), data)
		cancel()
		if err != nil {
			s.m.applyErrors.Inc()
			s.log.Error("write breaker decision", zap.String("model", t.Model), zap.Error(err))
		}
		if err := s.nc.Publish(BreakerEventSubject(t.Model), data); err != nil {
			s.log.Warn("announce breaker decision", zap.String("model", t.Model), zap.Error(err))
		}
		s.m.decisions.WithLabelValues("breaker", b.State).Inc()
		s.m.breakerState.WithLabelValues(t.Model).Set(float64(stateValue(t.To)))
		s.log.Info(t.String(), zap.String("model", t.Model), zap.String("state", b.State),
			zap.String("reason", b.Reason), zap.Int("requests", t.Numbers.Requests),
			zap.Int("failures", t.Numbers.Failures), zap.Float64("error_rate", t.Numbers.ErrorRate),
			zap.Int("consecutive", t.Numbers.Consecutive), zap.String("fallback", b.Fallback))
	}
}

// stateValue is the gauge value of a state: 0 closed, 1 half-open, 2 open.
func stateValue(st breaker.State) int {
	switch st {
	case breaker.HalfOpen:
		return 1
	case breaker.Open:
		return 2
	}
	return 0
}

// reset closes the breaker decisions in herd_control that are not closed:
// an earlier optimizer left them, and this one starts with closed breakers.
func (s *Service) reset(ctx context.Context) {
	for _, e := range s.decisions(ctx, control.BreakerPrefix) {
		k := e.Key()
		var b control.Breaker
		if json.Unmarshal(e.Value(), &b) != nil || b.State == control.Closed {
			continue
		}
		b.State, b.At, b.Reason, b.RetryAfter, b.Numbers = control.Closed, s.now(), "optimizer_restarted", 0, nil
		if _, err := s.control.Update(ctx, k, b.Marshal(), e.Revision()); err != nil {
			s.log.Warn("reset breaker decision", zap.String("key", k), zap.Error(err))
			continue
		}
		_ = s.nc.Publish(BreakerEventSubject(b.Model), b.Marshal())
		s.log.Info("breaker decision reset", zap.String("model", b.Model))
	}
}

// decisions returns the herd_control entries whose keys start with prefix,
// as an earlier optimizer left them; a key deleted meanwhile is skipped, and
// a listing that fails is logged and reads as none.
func (s *Service) decisions(ctx context.Context, prefix string) []jetstream.KeyValueEntry {
	lister, err := s.control.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoKeysFound) {
			s.log.Warn("list decisions", zap.String("prefix", prefix), zap.Error(err))
		}
		return nil
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []jetstream.KeyValueEntry
	for _, k := range keys {
		if e, err := s.control.Get(ctx, k); err == nil {
			out = append(out, e)
		}
	}
	return out
}
