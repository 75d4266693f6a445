package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/batch"
	"github.com/sutazai/herd/internal/cancel"
	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/coalesce"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/sched"
	"github.com/sutazai/herd/internal/settle"
	"github.com/sutazai/herd/internal/wire"
)

// Dispatcher moves requests from HERD_REQ to HERD_BATCH. Create it with New
// and run it with Run.
type Dispatcher struct {
	cfg     Config
	log     *zap.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *outcome.Store
	control jetstream.KeyValue
	m       *metrics
	now     func() time.Time
	rec     *capture.Recorder
	events  *events.Publisher

	// busy counts requests taken from the queues and not yet settled into
	// a reply, a batch or a group; with no input waiting and busy at zero,
	// open batches close at once.
	busy atomic.Int64
	// more holds, per priority, how many requests JetStream still had for
	// this consumer when it delivered the last one pulled (at moreAt, unix
	// ns): a burst still arriving, so open batches wait for it (up to
	// max_wait) instead of closing as idle. With several dispatchers the
	// rest may go to the others, so a figure older than max_wait is not
	// believed.
	more   [3]atomic.Uint64
	moreAt [3]atomic.Int64
	flushC chan struct{}
	in     [3]chan jetstream.Msg
	work   chan prioritized

	// followers are the requests held for their key's coalescing leader;
	// coal is the protocol's cluster-wide half (internal/coalesce).
	followers *coalesce.Table[*pending]
	coal      *coalesce.Claims
	// followerCap is, per priority, the most followers held at once: a
	// quarter of the priority consumer's max_ack_pending (held followers
	// are unacknowledged), so identical requests never stall a priority;
	// past it they run on their own. 0: no cap.
	followerCap [3]atomic.Int64

	// fleet is the workers and breakers herd_control says (fleet.go).
	fleet *fleetView
	// admitted holds the ask door's admissions of the asks it stored
	// (admitted.go); decodes counts the bodies admission decoded.
	admitted *admitted
	decodes  atomic.Int64

	// mu guards batcher and unserved.
	mu      sync.Mutex
	batcher *batch.Batcher[batchKey, *pending]
	// unserved holds requests for a model no live worker serves, until
	// one does, their deadline passes or NoWorkerWait: never acked into a
	// batch that nobody reads.
	unserved []*pending

	cancels *cancel.Set // cancels agents sent for their own requests

	auto *autoSelector // chooses the model of "model": "auto" requests

	ready chan struct{} // closed by Run once it listens and pulls

	claims  *outcome.Claims // claims of outcomes not known to be stored
	settler *settle.Settler // gives requests their final outcome

	// publishAsk stores a request of the ask door in HERD_REQ (a test
	// seam: js.PublishMsg).
	publishAsk func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error)
	askWaits   chan struct{} // bounds the asks waiting for a duplicate's outcome
}

type batchKey struct {
	model    string
	priority wire.Priority
}

// pending is a request waiting in an open batch.
type pending struct {
	item job.Item
	msg  jetstream.Msg
}

type prioritized struct {
	msg jetstream.Msg
	p   wire.Priority
}

// New returns a dispatcher on nc. The streams and buckets must exist
// (internal/provision). reg receives its metrics.
func New(ctx context.Context, cfg Config, nc *nats.Conn, log *zap.Logger, reg prometheus.Registerer) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, err := provision.Bind(ctx, nc)
	if err != nil {
		return nil, err
	}
	js, inflight, ctl := b.JS, b.Inflight, b.Control
	store, err := outcome.NewStore(ctx, js)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		cfg: cfg, log: log.Named("dispatcher"), nc: nc, js: js, store: store,
		control: ctl, m: newMetrics(reg, js), now: time.Now,
		flushC:    make(chan struct{}, 1),
		work:      make(chan prioritized),
		batcher:   batch.New[batchKey, *pending](cfg.BatchSize, cfg.MaxWait),
		followers: coalesce.NewTable[*pending](),
		coal:      coalesce.NewClaims(nc, inflight),
		cancels:   cancel.New(10*time.Minute, 100_000),
		fleet:     newFleetView(cfg.WorkerStaleAfter),
		admitted:  newAdmitted(),
		auto:      newAutoSelector(cfg.Auto, reg),
		// Redeliveries come a second after a failed claim; a claim
		// remembered for minutes outlasts a JetStream leader election.
		claims:   outcome.NewClaims(10*time.Minute, 4096),
		ready:    make(chan struct{}),
		askWaits: make(chan struct{}, 256),
	}
	d.publishAsk = func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) { return js.PublishMsg(ctx, m) }
	if d.rec, err = capture.NewRecorder(nc, cfg.Capture, 0); err != nil {
		return nil, err
	}
	if d.events, err = events.NewPublisher(nc, 0); err != nil {
		return nil, err
	}
	d.settler = settle.New(nc, js, store, d.events, d.log, d.claims, 0)
	d.settler.OnDeadLetter = d.m.deadLetters.Inc
	d.settler.OnResultsFull = d.m.resultsFull.Inc
	if reg != nil {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herd_capture_records_total", Help: "Requests recorded in HERD_CAPTURE."},
				func() float64 { return float64(d.rec.Written()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herd_capture_dropped_total", Help: "Requests not recorded because too many records were in flight (live requests are never delayed)."},
				func() float64 { return float64(d.rec.Dropped()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herd_capture_enabled", Help: "1 when capture is on."},
				func() float64 {
					if d.rec.Enabled() {
						return 1
					}
					return 0
				}),
		)
	}
	for i := range d.in {
		d.in[i] = make(chan jetstream.Msg, 16)
	}
	// `nats micro ls` lists it until ctx ends (internal/discovery).
	if err := discovery.Register(ctx, nc, discovery.Dispatcher, reg); err != nil {
		return nil, err
	}
	// The served models for the HTTP gateway (herd.models).
	if err := d.serveModels(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Ready returns a channel that Run closes once it listens on every subject
// it serves and pulls requests: from then on an ask is answered, a cancel
// heard and a max-deliveries advisory taken. It is never closed when Run
// fails to start.
func (d *Dispatcher) Ready() <-chan struct{} { return d.ready }

// Run dispatches until ctx ends, then stops taking requests, finishes the
// ones it holds (publishing open batches) and returns. Requests held in
// coalescing groups are handed back to JetStream for redelivery.
func (d *Dispatcher) Run(ctx context.Context) error {
	subs, ask, err := d.listen(ctx)
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	if err != nil {
		return err
	}
	// The workers registered now are known before the first request is
	// pulled: one taken before would wait for a worker it has.
	d.loadWorkers(ctx)
	iters, ackWait, err := d.pull(ctx)
	defer func() {
		for _, it := range iters {
			it.Stop()
		}
	}()
	if err != nil {
		return err
	}
	close(d.ready)

	// The background loops stop with loops, after the pool has drained;
	// work in flight goes on with a context shutdown does not cancel.
	var bg sync.WaitGroup
	loops, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	bg.Go(func() { d.watchWorkers(loops) })
	bg.Go(func() { d.watchBreakers(loops) })
	bg.Go(func() { d.watchAutoLoad(loops) })
	bg.Go(func() { d.rec.Watch(loops, d.control) })
	bg.Go(func() { d.flushLoop(loops) })
	bg.Go(func() { d.keepLoop(loops, ackWait) })
	bg.Go(func() { d.sweepOrphans(loops) })
	for i, it := range iters[:len(wire.Priorities)] {
		bg.Go(func() { d.pump(it, wire.Priorities[i]) })
	}
	var pool sync.WaitGroup
	work := context.WithoutCancel(ctx)
	for range d.cfg.Concurrency {
		pool.Go(func() {
			for w := range d.work {
				d.handle(work, w.msg, w.p)
				d.settled()
			}
		})
	}

	d.log.Info("dispatching", zap.Int("batch_size", d.cfg.BatchSize), zap.Duration("max_wait", d.cfg.MaxWait))
	d.schedule(ctx)

	// Drain: stop the pulls, hand back what was prefetched, finish the
	// rest, publish open batches, then hand back what is held.
	_ = ask.Drain()
	for _, it := range iters {
		it.Stop()
	}
	iters = nil
	d.handBackPrefetched()
	close(d.work)
	pool.Wait()
	d.publishAll(work, d.takeAll())
	stopLoops()
	bg.Wait()
	d.handBackHeld()
	d.log.Info("stopped")
	return nil
}

// listen subscribes every subject the dispatcher serves and makes sure
// the server has the subscriptions, before the first request is pulled
// and before Ready: an ask or a cancel sent from then on is heard. It
// returns the subscriptions (to remove when Run returns) and the ask
// door's (drained first at shutdown).
func (d *Dispatcher) listen(ctx context.Context) (subs []*nats.Subscription, ask *nats.Subscription, err error) {
	// Answers to cancels and announcements go out even while shutting down.
	work := context.WithoutCancel(ctx)
	for subj, h := range map[string]nats.MsgHandler{
		wire.CancelPrefix + ".*.*": func(m *nats.Msg) { d.onCancel(work, m) },
		wire.DonePrefix + ".*":     func(m *nats.Msg) { d.onDone(work, m) },
	} {
		s, err := d.nc.Subscribe(subj, h)
		if err != nil {
			return subs, nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	askSem := make(chan struct{}, 256)
	ask, err = d.nc.QueueSubscribe(wire.AskPrefix+".>", "herd-dispatchers", func(m *nats.Msg) {
		select {
		case askSem <- struct{}{}:
		default:
			d.respond(m, wire.Errorf(wire.CodeQueueFull, "dispatcher is taking too many asks at once; retry"))
			return
		}
		go func() { defer func() { <-askSem }(); d.onAsk(ctx, m) }()
	})
	if err != nil {
		return subs, nil, fmt.Errorf("subscribe ask: %w", err)
	}
	subs = append(subs, ask)
	lookup, err := d.subscribeLookup(ctx)
	if err != nil {
		return subs, nil, fmt.Errorf("subscribe lookup: %w", err)
	}
	subs = append(subs, lookup)
	if err := d.nc.FlushTimeout(10 * time.Second); err != nil {
		return subs, nil, fmt.Errorf("subscribe: %w", err)
	}
	return subs, ask, nil
}

// pull starts pulling the three priority consumers (in wire.Priorities
// order) and, last, HERD_ADVISORIES (maxdeliver.go). It returns the
// iterators and the request consumers' ack wait.
func (d *Dispatcher) pull(ctx context.Context) (iters []jetstream.MessagesContext, ackWait time.Duration, err error) {
	for _, p := range wire.Priorities {
		cons, err := d.js.Consumer(ctx, wire.StreamReq, wire.ReqConsumerName(p))
		if err != nil {
			return iters, 0, fmt.Errorf("consumer %s: %w", wire.ReqConsumerName(p), err)
		}
		ackWait = cons.CachedInfo().Config.AckWait
		if mp := cons.CachedInfo().Config.MaxAckPending; mp > 0 {
			d.followerCap[p.Index()].Store(int64(mp / 4))
		}
		// A small prefetch: requests buffered here have no in-progress
		// acks, so they must reach the pool well within the ack wait. A
		// short pull expiry: a pull left on a consumer leader that died
		// (a cluster node lost) is noticed by its missed heartbeats, half
		// the expiry, and made again on the new leader; with the default
		// 30s expiry requests waited 30s after a leader change.
		it, err := cons.Messages(jetstream.PullMaxMessages(16), jetstream.PullExpiry(5*time.Second))
		if err != nil {
			return iters, 0, fmt.Errorf("consume %s: %w", wire.ReqConsumerName(p), err)
		}
		iters = append(iters, it)
	}
	// What JetStream gave up on is kept in HERD_ADVISORIES until a
	// dispatcher has settled it.
	advisories, err := d.consumeAdvisories(ctx)
	if err != nil {
		return iters, 0, err
	}
	return append(iters, advisories), ackWait, nil
}

// handBackPrefetched hands back the requests pulled but not yet taken by
// the pool (shutdown).
func (d *Dispatcher) handBackPrefetched() {
	for _, c := range d.in {
		for {
			select {
			case m := <-c:
				done(m, actHandBack)
				continue
			default:
			}
			break
		}
	}
}

// handBackHeld hands back the requests held for a coalescing leader or a
// worker (shutdown): they were never acknowledged, and another dispatcher
// takes them.
func (d *Dispatcher) handBackHeld() {
	for _, h := range d.followers.Drain() {
		done(h.Held.msg, actHandBack)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.unserved {
		done(h.msg, actHandBack)
	}
	d.unserved = nil
}

// pump moves messages from a pull iterator into a channel until the
// iterator stops.
func (d *Dispatcher) pump(it jetstream.MessagesContext, p wire.Priority) {
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			d.log.Warn("pull", zap.Error(err))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// Handed on before more is updated: until then more still counts
		// this one (the one before it had it pending), so no idle flush
		// can come between the two.
		md, err := m.Metadata()
		d.in[p.Index()] <- m
		if err == nil {
			d.moreAt[p.Index()].Store(d.now().UnixNano())
			d.more[p.Index()].Store(md.NumPending)
			if md.NumPending == 0 {
				// The pool may have settled this one before the
				// store, seen the old figure and left the batch open.
				d.flushIfIdle()
			}
		}
	}
}

// schedule hands queued requests to the pool, high before normal before
// low with ageing, until ctx ends.
func (d *Dispatcher) schedule(ctx context.Context) {
	pol := sched.New(d.cfg.Sched, d.now())
	for {
		now := d.now()
		var got jetstream.Msg
		var gp wire.Priority
		for _, p := range pol.Order(now) {
			select {
			case m := <-d.in[p.Index()]:
				got, gp = m, p
			default:
			}
			pol.Served(p, now)
			if got != nil {
				break
			}
		}
		if got == nil {
			select {
			case <-ctx.Done():
				return
			case got = <-d.in[0]:
				gp = wire.High
			case got = <-d.in[1]:
				gp = wire.Normal
			case got = <-d.in[2]:
				gp = wire.Low
			}
		}
		d.busy.Add(1)
		if !d.hand(ctx, prioritized{got, gp}) {
			done(got, actHandBack)
			d.busy.Add(-1)
			return
		}
	}
}

// hand gives a request to the pool, telling JetStream it is in progress
// while the pool is too busy to take it, so a saturated dispatcher does
// not see it redelivered. It reports false when ctx ended first.
func (d *Dispatcher) hand(ctx context.Context, w prioritized) bool {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case d.work <- w:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			_ = w.msg.InProgress()
			t.Reset(time.Second)
		}
	}
}

// settled is called when a request left the pool; with nothing else
// waiting, here or still in JetStream for this consumer, it closes open
// batches so a lone request is not held back.
func (d *Dispatcher) settled() {
	if d.busy.Add(-1) > 0 {
		return
	}
	d.flushIfIdle()
}

// flushIfIdle closes open batches when no request is being handled or
// waits here, and JetStream did not lately say it has more for this
// dispatcher.
func (d *Dispatcher) flushIfIdle() {
	if d.busy.Load() > 0 {
		return
	}
	now := d.now().UnixNano()
	for i, c := range d.in {
		if len(c) > 0 || (d.more[i].Load() > 0 && now-d.moreAt[i].Load() < int64(d.cfg.MaxWait)) {
			return
		}
	}
	select {
	case d.flushC <- struct{}{}:
	default:
	}
}

// flushLoop publishes batches that are due (max_wait) or when input has
// gone idle.
func (d *Dispatcher) flushLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d.mu.Lock()
		wait, open := d.batcher.UntilNext(d.now())
		d.mu.Unlock()
		if !open {
			wait = time.Hour
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.flushC:
			d.publishAll(ctx, d.takeAll())
		case <-t.C:
			d.mu.Lock()
			due := d.batcher.Due(d.now())
			d.mu.Unlock()
			d.publishAll(ctx, due)
		}
	}
}

func (d *Dispatcher) takeAll() []batch.Batch[batchKey, *pending] {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.batcher.Flush()
}

func (d *Dispatcher) publishAll(ctx context.Context, bs []batch.Batch[batchKey, *pending]) {
	for _, b := range bs {
		d.publish(ctx, b.Key, b.Items)
	}
}

// enqueue puts a request into its open batch and publishes the batch when
// full.
func (d *Dispatcher) enqueue(ctx context.Context, p *pending) {
	d.mu.Lock()
	b, full := d.batcher.Add(d.now(), batchKey{p.item.Model, p.item.Priority}, p)
	d.mu.Unlock()
	if full {
		d.publish(ctx, b.Key, b.Items)
	}
}

// publish stores a batch in HERD_BATCH and only then acknowledges its
// requests. A batch larger than the server's max payload is split.
func (d *Dispatcher) publish(ctx context.Context, k batchKey, ps []*pending) {
	if len(ps) == 0 {
		return
	}
	jb := job.Batch{ID: nuid.Next(), Model: k.model, Priority: k.priority, Created: d.now()}
	for _, p := range ps {
		jb.Items = append(jb.Items, p.item)
	}
	data, err := json.Marshal(jb)
	if err != nil {
		d.log.Error("encode batch", zap.Error(err))
		return
	}
	if int64(len(data)) > d.nc.MaxPayload()-4096 && len(ps) > 1 {
		d.publish(ctx, k, ps[:len(ps)/2])
		d.publish(ctx, k, ps[len(ps)/2:])
		return
	}
	m := nats.NewMsg(wire.BatchSubject(k.model, k.priority))
	m.Data = data
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.js.PublishMsg(pctx, m, jetstream.WithMsgID(jb.ID)); err != nil {
		// The requests stay in HERD_REQ and come back after the delay.
		d.log.Warn("publish batch; requests will be redelivered", zap.String("model", k.model), zap.Int("size", len(ps)), zap.Error(err))
		d.m.batchErrors.Inc()
		for _, p := range ps {
			done(p.msg, actRetry)
		}
		return
	}
	_ = d.nc.Publish(wire.WakeSubject(k.model), nil)
	d.auto.published(k.model, len(ps))
	debug := d.log.Core().Enabled(zap.DebugLevel)
	for _, p := range ps {
		done(p.msg, actSettled)
		d.m.requests.WithLabelValues(string(p.item.Priority), "batched").Inc()
		d.m.cache.WithLabelValues(cacheMiss).Inc()
		if debug {
			d.log.Debug("batched", zap.String("request_id", p.item.ID), zap.String("batch", jb.ID),
				zap.String("model", k.model), zap.String("priority", string(k.priority)), zap.Bool("leader", p.item.Leader))
		}
	}
	d.m.batches.Inc()
	d.m.batchSize.Observe(float64(len(ps)))
	d.events.Batch(&events.Batch{At: d.now(), Model: k.model, Priority: string(k.priority), Size: len(ps),
		Fill: float64(len(ps)) / float64(d.cfg.BatchSize)})
}

// answer gives the request its final outcome o (package settle) and
// acknowledges it; one whose outcome cannot be stored yet comes back after
// a second.
func (d *Dispatcher) answer(ctx context.Context, p *pending, o *outcome.Outcome, result string) {
	now := d.now()
	if !p.item.Received.IsZero() {
		o.QueueMs = now.Sub(p.item.Received).Milliseconds()
		o.TotalMs = o.QueueMs
	}
	won, err := d.settler.Settle(ctx, settle.Final{Item: p.item, Outcome: o,
		Event: &events.Request{At: now, Dispatcher: true}})
	if err != nil {
		d.log.Warn("save result; request will be redelivered", zap.String("request_id", o.RequestID), zap.Error(err))
		done(p.msg, actRetry)
		return
	}
	done(p.msg, actSettled)
	if !won {
		d.m.requests.WithLabelValues(string(p.item.Priority), "already_answered").Inc()
		return
	}
	d.m.requests.WithLabelValues(string(p.item.Priority), result).Inc()
	d.m.settled(p.item, result, now)
	d.log.Debug("answered", zap.String("request_id", o.RequestID), zap.String("result", result), zap.Int("status", o.Status))
}

// refuse answers a request with an error that is not its outcome (its id
// is another agent's: storing it would answer that agent), without
// storing it, and acknowledges it.
func (d *Dispatcher) refuse(p *pending, e *wire.Error) {
	d.m.rejected.WithLabelValues(string(e.Code)).Inc()
	d.settler.Resend(p.item, outcome.FromError(p.item.ID, e))
	done(p.msg, actSettled)
	d.m.requests.WithLabelValues(string(p.item.Priority), string(e.Code)).Inc()
}

// deadLetter moves a request that cannot be answered to HERD_DLQ with its
// reason.
func (d *Dispatcher) deadLetter(ctx context.Context, msg jetstream.Msg, p wire.Priority, agent, reason string) {
	dl := nats.NewMsg(wire.DLQSubject(p, agent))
	dl.Data = msg.Data()
	for k, v := range msg.Headers() {
		if k == wire.HdrMsgID {
			continue
		}
		dl.Header[k] = v
	}
	dl.Header.Set(wire.HdrRequestID, msg.Headers().Get(wire.HdrMsgID))
	if id := msg.Headers().Get(wire.HdrMsgID); id != "" {
		dl.Header.Set(wire.HdrMsgID, id) // one dead letter per request
	}
	dl.Header.Set(wire.HdrReason, reason)
	if _, err := d.js.PublishMsg(ctx, dl); err != nil {
		d.log.Warn("dead letter; will retry", zap.Error(err))
		done(msg, actRetry)
		return
	}
	d.log.Warn("dead letter", zap.String("subject", msg.Subject()), zap.String("reason", reason))
	d.m.deadLetters.Inc()
	done(msg, actDrop)
}

// onCancel answers a request of the canceling agent at once when it is
// waiting here, and remembers the cancel for one that has not arrived.
// A cancel names its agent (herd.cancel.<agent>.<id>): it takes effect
// only for that agent's request.
func (d *Dispatcher) onCancel(ctx context.Context, m *nats.Msg) {
	agent, id, ok := wire.ParseCancel(m.Subject)
	if !ok {
		return
	}
	d.cancels.Add(agent, id)
	mine := func(p *pending) bool { return p.item.ID == id && p.item.Agent == agent }
	var found []*pending
	d.mu.Lock()
	if p, ok := d.batcher.Remove(mine); ok {
		found = append(found, p)
	}
	for i, h := range d.unserved {
		if mine(h) {
			found = append(found, h)
			d.unserved = append(d.unserved[:i], d.unserved[i+1:]...)
			break
		}
	}
	d.mu.Unlock()
	if f, ok := d.followers.Remove(func(f coalesce.Follower[*pending]) bool { return mine(f.Held) }); ok {
		found = append(found, f.Held)
	}
	for _, p := range found {
		d.answer(ctx, p, outcome.FromError(id, wire.Errorf(wire.CodeCanceled, "request canceled by its agent")), "canceled")
	}
}

// loadWorkers reads the worker registrations herd_control holds now, for
// at most a few seconds (watchWorkers keeps them current afterwards).
func (d *Dispatcher) loadWorkers(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := d.control.Watch(lctx, registry.KeyPrefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			return // the values held now have all come
		}
		var r registry.Registration
		if json.Unmarshal(e.Value(), &r) == nil {
			d.fleet.putWorker(r)
		}
	}
}

// watchWorkers keeps the registry of workers and their models current.
func (d *Dispatcher) watchWorkers(ctx context.Context) {
	provision.Watch(ctx, d.control, registry.KeyPrefix+">", func(e jetstream.KeyValueEntry) {
		id := e.Key()[len(registry.KeyPrefix):]
		if e.Operation() != jetstream.KeyValuePut {
			d.fleet.deleteWorker(id)
			return
		}
		var r registry.Registration
		if json.Unmarshal(e.Value(), &r) == nil {
			d.fleet.putWorker(r)
		}
	})
}

// watchBreakers keeps the optimizer's breaker decisions current.
func (d *Dispatcher) watchBreakers(ctx context.Context) {
	provision.Watch(ctx, d.control, control.BreakerPrefix+">", func(e jetstream.KeyValueEntry) {
		model, ok := control.ModelFromBreakerKey(e.Key())
		if !ok {
			return
		}
		var b control.Breaker
		present := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &b) == nil
		d.fleet.setBreaker(model, b, present)
	})
}

// breaker returns the open breaker of model, if any.
func (d *Dispatcher) breaker(model string) (control.Breaker, bool) { return d.fleet.openBreaker(model) }

// Held returns how many requests wait in coalescing groups for the answer
// of an identical request.
func (d *Dispatcher) Held() int { return d.followers.Held() }

// Models returns the models live workers serve, with their digests.
func (d *Dispatcher) Models() map[string]string { return d.fleet.models(d.now()) }
