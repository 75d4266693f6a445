package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/cancel"
	"github.com/sutazai/herd/internal/coalesce"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/sched"
	"github.com/sutazai/herd/internal/settle"
	"github.com/sutazai/herd/internal/wire"
)

// Worker pulls batches for its models and runs them on Ollama. Create it
// with New and run it with Run.
type Worker struct {
	cfg     Config
	log     *zap.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *outcome.Store
	coal    *coalesce.Claims // releases coalescing leaders' claims
	control jetstream.KeyValue
	defs    *provision.Definitions
	ollama  *api.Client
	m       *metrics
	slots   *slotPool
	wake    chan struct{}
	events  *events.Publisher
	// calls is what runs here: running calls, the batch run that answers
	// each request, streaming callers without a reader (calls.go).
	calls *calls

	// mu guards models, consumers and next.
	mu        sync.Mutex
	models    map[string]string // served model -> digest
	consumers map[consumerKey]jetstream.Consumer
	next      int // round-robin start over models

	// settings is how each model runs beyond the configuration: the
	// optimizer's decisions and the model's own defaults (settings.go).
	settings *modelSettings

	cancels *cancel.Set // cancels agents sent, and callers found gone
	settler *settle.Settler
	// resultsTTL is how long herd_results keeps an outcome (read at start).
	resultsTTL time.Duration
}

type consumerKey struct {
	model string
	p     wire.Priority
}

// New returns a worker on nc calling Ollama through client. The streams
// and buckets must exist (internal/provision); defs gives the batch
// consumer template. reg receives its metrics.
func New(ctx context.Context, cfg Config, nc *nats.Conn, client *api.Client, defs *provision.Definitions, log *zap.Logger, reg prometheus.Registerer) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, err := provision.Bind(ctx, nc)
	if err != nil {
		return nil, err
	}
	js, inflight, control := b.JS, b.Inflight, b.Control
	store, err := outcome.NewStore(ctx, js)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg: cfg, log: log.Named("worker").With(zap.String("worker", cfg.ID)), nc: nc, js: js, store: store,
		coal: coalesce.NewClaims(nc, inflight), control: control, defs: defs, ollama: client, m: newMetrics(reg, cfg.ID),
		slots:     newSlotPool(sched.Slots{Total: cfg.Slots, ReservedHigh: cfg.reserved()}, cfg.Sched),
		wake:      make(chan struct{}, 1),
		models:    map[string]string{},
		consumers: map[consumerKey]jetstream.Consumer{},
		calls:     newCalls(),
		settings:  newModelSettings(),
		cancels:   cancel.New(10*time.Minute, 100_000),
	}
	if w.events, err = events.NewPublisher(nc, 0); err != nil {
		return nil, err
	}
	// A claim JetStream does not answer is retried for storeRetry (on a
	// cluster, while the bucket's stream elects a leader); a failed one is
	// remembered for the batch's next delivery here.
	w.settler = settle.New(nc, js, store, w.events, w.log, outcome.NewClaims(10*time.Minute, 4096), storeRetry)
	w.settler.OnDeadLetter = w.m.deadLetters.Inc
	w.settler.OnResultsFull = w.m.resultsFull.Inc
	if w.resultsTTL, err = store.ResultsTTL(ctx); err != nil {
		return nil, err
	}
	w.m.slots.Set(float64(cfg.Slots))
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herd_worker_busy_slots", Help: "Ollama calls running now.", ConstLabels: prometheus.Labels{"worker": cfg.ID},
		}, func() float64 { return float64(w.slots.busy()) }))
	}
	w.m.budget.Set(cfg.CPUBudget)
	// `nats micro ls` lists it until ctx ends (internal/discovery).
	if err := discovery.Register(ctx, nc, discovery.Worker.With("worker", cfg.ID), reg); err != nil {
		return nil, err
	}
	return w, nil
}

// Run serves batches until ctx ends, then stops fetching and waits up to
// DrainTimeout for running batches; batches still running after that are
// handed back for redelivery. It returns an error only when it cannot
// start (Ollama unreachable for its model list, JetStream refusing the
// consumers).
func (w *Worker) Run(ctx context.Context) error {
	if err := w.refresh(ctx); err != nil {
		return err
	}
	unsubscribe, err := w.subscribe()
	defer unsubscribe()
	if err != nil {
		return err
	}

	// Calls run on runCtx: it outlives ctx by DrainTimeout so that
	// shutdown finishes what it started.
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	// The heartbeat and the num_ctx watch end before the registration is
	// deleted, the other watches when Run returns.
	var registration sync.WaitGroup
	registration.Go(func() { w.heartbeat(ctx) })
	registration.Go(func() { w.watchNumCtx(ctx) })
	var watches sync.WaitGroup
	watches.Go(func() { w.watchBudget(ctx) })
	watches.Go(func() { w.watchKeepAlive(ctx) })
	watches.Go(func() { w.watchUnload(ctx) })
	watches.Go(func() { w.watchPreload(ctx) })
	defer watches.Wait()

	w.warm(ctx)
	w.log.Info("serving", zap.Strings("models", w.modelNames()), zap.Int("slots", w.cfg.Slots), zap.Float64("cpu_budget", w.cfg.CPUBudget))
	var batches sync.WaitGroup
	w.serve(ctx, runCtx, &batches)
	w.drain(&batches, abort)
	registration.Wait()
	w.deregister()
	w.log.Info("stopped")
	return nil
}

// subscribe listens for wake-ups, cancels and streams nobody reads. The
// function it returns unsubscribes, also after an error.
func (w *Worker) subscribe() (unsubscribe func(), err error) {
	subs := []*nats.Subscription{}
	unsubscribe = func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for subj, h := range map[string]nats.MsgHandler{
		wire.WakePrefix + ".>":     func(*nats.Msg) { w.poke() },
		wire.CancelPrefix + ".*.*": w.onCancel,
		goneRoot + ".*":            w.onNoReader,
	} {
		s, err := w.nc.Subscribe(subj, h)
		if err != nil {
			return unsubscribe, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		subs = append(subs, s)
	}
	return unsubscribe, nil
}

// serve fetches batches and starts them in batches until ctx ends; their
// calls run on runCtx. Between fetches it waits for a wake-up, a freed
// slot or PollInterval.
func (w *Worker) serve(ctx, runCtx context.Context, batches *sync.WaitGroup) {
	pol := sched.New(w.cfg.Sched, time.Now())
	poll := time.NewTimer(w.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		if w.startNext(ctx, runCtx, pol, batches) {
			continue
		}
		poll.Reset(w.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-w.slots.freed:
		case <-poll.C:
		}
	}
}

// startNext fetches from the first priority, in pol's order, that has room
// in the slot pool and batches waiting, and starts each batch it claims. It
// reports whether it fetched any.
func (w *Worker) startNext(ctx, runCtx context.Context, pol *sched.Policy, batches *sync.WaitGroup) bool {
	now := time.Now()
	for i, p := range pol.Order(now) {
		room := w.slots.canFetch(p, i == 0)
		if room == 0 {
			continue
		}
		// Several batches per round trip when there is room for them.
		msgs := w.fetch(ctx, p, min(max(room/4, 1), 4))
		pol.Served(p, now)
		if len(msgs) == 0 {
			continue
		}
		for _, msg := range msgs {
			br := w.claim(ctx, msg)
			if br == nil {
				continue
			}
			batches.Go(func() { w.runBatch(runCtx, msg, br) })
		}
		return true
	}
	return false
}

// drain waits up to DrainTimeout for the running batches, then aborts
// their calls (the batches are handed back) and waits for them to end.
func (w *Worker) drain(batches *sync.WaitGroup, abort context.CancelFunc) {
	w.log.Info("draining", zap.Int("busy_slots", w.slots.busy()))
	drained := make(chan struct{})
	go func() { batches.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn("drain timeout; handing running batches back", zap.Duration("drain_timeout", w.cfg.DrainTimeout))
		abort()
		<-drained
	}
}

// deregister deletes the worker's registration from the control bucket.
func (w *Worker) deregister() {
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.control.Delete(dctx, registry.Key(w.cfg.ID))
}

// warm loads the priority models with their num_ctx so the first request
// does not wait for a load; keep_alive keeps them loaded.
func (w *Worker) warm(ctx context.Context) {
	for _, model := range w.cfg.Warm {
		w.mu.Lock()
		_, served := w.models[model]
		w.mu.Unlock()
		if !served {
			continue
		}
		start := time.Now()
		req := &api.GenerateRequest{Model: model, Options: map[string]any{"num_thread": w.numThread(model)}}
		if ka, ok := w.modelKeepAlive(model); ok {
			req.KeepAlive = &api.Duration{Duration: ka}
		}
		if n := w.numCtx(model); n > 0 {
			req.Options["num_ctx"] = n
		}
		err := w.ollama.Generate(ctx, req, func(api.GenerateResponse) error { return nil })
		if err != nil {
			w.log.Warn("preload failed", zap.String("model", model), zap.Error(err))
			continue
		}
		w.log.Info("model warm", zap.String("model", model), zap.Duration("took", time.Since(start)))
	}
}

func (w *Worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// fetch takes up to n batches of priority p from one served model,
// trying the models round-robin, without waiting. It returns none when
// none is queued.
func (w *Worker) fetch(ctx context.Context, p wire.Priority, n int) []jetstream.Msg {
	w.mu.Lock()
	names := w.modelNamesLocked()
	start := w.next
	w.next++
	w.mu.Unlock()
	for i := range names {
		model := names[(start+i)%len(names)]
		if !w.slots.canFetchModel(model) {
			continue // its share of the slots is claimed: leave room for the others
		}
		w.mu.Lock()
		cons := w.consumers[consumerKey{model, p}]
		w.mu.Unlock()
		if cons == nil {
			continue
		}
		b, err := cons.FetchNoWait(n)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("fetch", zap.String("model", model), zap.Error(err))
			}
			continue
		}
		var msgs []jetstream.Msg
		for m := range b.Messages() {
			msgs = append(msgs, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			w.log.Debug("fetch", zap.String("model", model), zap.Error(err))
		}
		if len(msgs) > 0 {
			return msgs
		}
	}
	return nil
}

// refresh reads the models Ollama has, picks the ones to serve, makes sure
// their batch consumers exist and registers the worker.
func (w *Worker) refresh(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := w.ollama.List(lctx)
	if err != nil {
		return fmt.Errorf("list ollama models: %w", err)
	}
	have := map[string]string{}
	for _, m := range list.Models {
		have[m.Name] = m.Digest
		have[m.Model] = m.Digest
		if base, ok := trimLatest(m.Name); ok {
			have[base] = m.Digest
		}
	}
	serve := map[string]string{}
	if len(w.cfg.Models) == 0 {
		for _, m := range list.Models {
			name := m.Name
			if base, ok := trimLatest(name); ok {
				name = base
			}
			serve[name] = m.Digest
		}
	} else {
		for _, name := range w.cfg.Models {
			serve[name] = have[name]
			if have[name] == "" {
				w.log.Warn("configured model is not in Ollama; its requests will fail with model_not_found until it is", zap.String("model", name))
			}
		}
	}
	for name := range serve {
		for _, p := range wire.Priorities {
			k := consumerKey{name, p}
			w.mu.Lock()
			_, ok := w.consumers[k]
			w.mu.Unlock()
			if ok {
				continue
			}
			cons, err := w.js.CreateOrUpdateConsumer(ctx, wire.StreamBatch, w.defs.BatchConsumer(name, p))
			if err != nil {
				return fmt.Errorf("batch consumer for %s/%s: %w", name, p, err)
			}
			w.mu.Lock()
			w.consumers[k] = cons
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	w.models = serve
	w.mu.Unlock()
	w.readDefaults(ctx, serve)
	windows := map[string]int{}
	for model := range serve {
		windows[model] = w.numCtx(model)
	}
	w.m.served(serve, windows, w.numThread)
	reg := registry.Registration{ID: w.cfg.ID, Models: serve, Windows: windows, Slots: w.cfg.Slots, CPUBudget: w.cfg.CPUBudget, At: time.Now()}
	if _, err := w.control.Put(ctx, registry.Key(w.cfg.ID), reg.Marshal()); err != nil {
		return fmt.Errorf("register worker: %w", err)
	}
	return nil
}

func trimLatest(name string) (string, bool) {
	const suffix = ":latest"
	if len(name) > len(suffix) && name[len(name)-len(suffix):] == suffix {
		return name[:len(name)-len(suffix)], true
	}
	return name, false
}

// heartbeat refreshes the registration and the model list until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := w.refresh(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("refresh", zap.Error(err))
		}
		w.events.Worker(w.report(ctx))
	}
}

func (w *Worker) modelNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.modelNamesLocked()
}

func (w *Worker) modelNamesLocked() []string {
	names := make([]string, 0, len(w.models))
	for n := range w.models {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// numCtx returns the window model runs in: the optimizer's decision, else
// the configured one, else the model's own (readDefaults), else 0
// (Ollama's default, when Ollama could not say).
func (w *Worker) numCtx(model string) int { return w.settings.window(model, w.cfg.NumCtx) }

// readDefaults reads from Ollama the defaults of each served model not
// read yet for its digest (one /api/show each), so that every model runs
// in one window, and herd knows it, even when the configuration does not
// name the model. A model Ollama cannot describe now is tried again at
// the next refresh; until then it runs at Ollama's defaults.
func (w *Worker) readDefaults(ctx context.Context, serve map[string]string) {
	for model, digest := range serve {
		if digest == "" || w.settings.ownRead(model, digest) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		d, err := ollama.Defaults(sctx, w.ollama, model)
		cancel()
		if err != nil {
			w.log.Warn("model defaults not read; it runs at Ollama's until they are", zap.String("model", model), zap.Error(err))
			continue
		}
		w.settings.setOwn(model, digest, d)
		w.log.Info("model defaults read", zap.String("model", model), zap.Int("num_ctx", d.NumCtx),
			zap.Int("num_thread", d.NumThread), zap.Int("context_length", d.ContextLength))
	}
}

// watchNumCtx applies the optimizer's num_ctx decisions until ctx ends.
func (w *Worker) watchNumCtx(ctx context.Context) {
	provision.Watch(ctx, w.control, control.NumCtxPrefix+">", func(e jetstream.KeyValueEntry) {
		model, ok := control.ModelFromNumCtxKey(e.Key())
		if !ok {
			return
		}
		var d control.NumCtx
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &d) != nil {
			d.NumCtx = 0
		}
		if w.settings.setNumCtx(model, d.NumCtx) && d.NumCtx > 0 {
			w.log.Info("num_ctx decision applied", zap.String("model", model), zap.Int("num_ctx", d.NumCtx), zap.String("reason", d.Reason))
		}
	})
}

// own makes br the run that answers request id here, and reports false
// when another run already does.
func (w *Worker) own(id string, br *batchRun) bool { return w.calls.own(id, br) }

// disown ends br's claim on id (answered, or handed back).
func (w *Worker) disown(id string, br *batchRun) { w.calls.disown(id, br) }

// onCancel stops a running call or marks a request so it does not start,
// when the canceling agent (herd.cancel.<agent>.<id>) is the request's.
func (w *Worker) onCancel(m *nats.Msg) {
	agent, id, ok := wire.ParseCancel(m.Subject)
	if !ok {
		return
	}
	w.cancels.Add(agent, id)
	if rc, ok := w.calls.call(id); ok && rc.agent == agent {
		w.log.Info("canceling running request", zap.String("request_id", id))
		rc.cancel()
	}
}

// isCanceled reports whether agent canceled its request id, or its caller
// was found gone.
func (w *Worker) isCanceled(agent, id string) bool { return w.cancels.Canceled(agent, id) }
