package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/coalesce"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// Load refresh of the auto selection: how often the HERD_BATCH backlog of
// the profiles' models is read while auto requests arrive, how long after
// the last one the refresh goes on, and how stale a snapshot may be before
// a request waits for a fresh one.
const (
	autoRefreshEvery = 500 * time.Millisecond
	autoActiveFor    = time.Minute
	autoStaleAfter   = 2 * time.Second
)

// autoSelector chooses the model of "model": "auto" requests
// (policy.SelectModel) from what the dispatcher knows of each model's load:
// the batches waiting for a worker in HERD_BATCH, the requests held here in
// coalescing groups, the breakers in herd_control and the workers'
// registrations.
type autoSelector struct {
	cfg    policy.AutoConfig
	models []string // every model a profile names
	count  *prometheus.CounterVec

	// refreshMu serializes reads of HERD_BATCH and guards batches.
	refreshMu sync.Mutex
	batches   jetstream.Stream
	// mu guards the fields below.
	mu        sync.Mutex
	waiting   map[string]int       // batches of the model waiting in HERD_BATCH
	since     map[string]time.Time // since when the model has had batches waiting
	avgSize   map[string]float64   // moving average of the model's published batch sizes
	refreshed time.Time
	lastUse   time.Time
	chosen    map[string]string // profile -> model it last chose
}

func newAutoSelector(cfg policy.AutoConfig, reg prometheus.Registerer) *autoSelector {
	a := &autoSelector{
		cfg: cfg,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_auto_selections_total",
			Help: `Requests for "model": "auto" by the agent profile they matched and the model chosen for them.`,
		}, []string{"profile", "model"}),
		waiting: map[string]int{}, since: map[string]time.Time{}, avgSize: map[string]float64{},
		chosen: map[string]string{},
	}
	for _, p := range cfg.Profiles {
		for _, m := range p.Models {
			if !slices.Contains(a.models, m) {
				a.models = append(a.models, m)
			}
		}
	}
	if reg != nil {
		reg.MustRegister(a.count)
	}
	return a
}

// published records the size of a batch published for model, when a
// profile names it: only those are read, and any other model name an agent
// sends would stay here for good.
func (a *autoSelector) published(model string, size int) {
	if !slices.Contains(a.models, model) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if avg, ok := a.avgSize[model]; ok {
		a.avgSize[model] = 0.8*avg + 0.2*float64(size)
	} else {
		a.avgSize[model] = float64(size)
	}
}

// refreshAutoLoad reads how many batches of each profile model wait for a
// worker at now: the NumPending of its HERD_BATCH consumers, all listed in
// one request. With maxAge > 0 it does nothing when the last read is
// younger than that (requests that waited for another's read).
func (d *Dispatcher) refreshAutoLoad(ctx context.Context, now time.Time, maxAge time.Duration) {
	a := d.auto
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	if maxAge > 0 {
		a.mu.Lock()
		fresh := now.Sub(a.refreshed) <= maxAge
		a.mu.Unlock()
		if fresh {
			return
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if a.batches == nil {
		st, err := d.js.Stream(ctx, wire.StreamBatch)
		if err != nil {
			d.log.Debug("auto: open batch stream", zap.Error(err))
			a.failed(now)
			return
		}
		a.batches = st
	}
	names := make(map[string]string, 3*len(a.models)) // consumer -> model
	for _, m := range a.models {
		for _, p := range wire.Priorities {
			names[wire.ConsumerName(m, p)] = m
		}
	}
	counts := make(map[string]int, len(a.models))
	l := a.batches.ListConsumers(ctx)
	for info := range l.Info() {
		if m, ok := names[info.Name]; ok {
			counts[m] += int(info.NumPending)
		}
	}
	if err := l.Err(); err != nil {
		d.log.Debug("auto: list batch consumers", zap.Error(err))
		a.failed(now)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.models {
		n := counts[m]
		switch {
		case n == 0:
			delete(a.since, m)
		case a.waiting[m] == 0 || a.since[m].IsZero():
			a.since[m] = now
		}
		a.waiting[m] = n
	}
	a.refreshed = now
}

// failed notes a read of the backlog that failed at now: the last figures
// stay, and requests do not each wait for another try until the next one.
func (a *autoSelector) failed(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refreshed = now
}

// watchAutoLoad refreshes the backlog every autoRefreshEvery while auto
// requests arrive, until ctx ends.
func (d *Dispatcher) watchAutoLoad(ctx context.Context) {
	if len(d.auto.models) == 0 {
		return
	}
	t := time.NewTicker(autoRefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := d.now()
		d.auto.mu.Lock()
		active := now.Sub(d.auto.lastUse) < autoActiveFor
		d.auto.mu.Unlock()
		if active {
			d.refreshAutoLoad(ctx, now, 0)
		}
	}
}

// AutoLoad returns the load of every model the agent profiles name, as the
// auto selection sees it at now: requests waiting (estimated from the
// batches waiting in HERD_BATCH and the requests held here), how long the
// model has had a backlog, whether its breaker is open and whether live
// workers serve it.
func (d *Dispatcher) AutoLoad(now time.Time) map[string]policy.ModelLoad {
	a := d.auto
	load := make(map[string]policy.ModelLoad, len(a.models))
	held := map[string]int{}
	d.followers.Each(func(_ string, f coalesce.Follower[*pending]) { held[f.Held.item.Model]++ })
	for _, m := range a.models {
		var l policy.ModelLoad
		_, l.BreakerOpen = d.fleet.openBreaker(m)
		_, served, anyLive := d.fleet.lookup(m, now)
		l.Unavailable = anyLive && !served
		l.QueueDepth = held[m]
		load[m] = l
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.models {
		l := load[m]
		if n := a.waiting[m]; n > 0 {
			size := a.avgSize[m]
			if size < 1 {
				size = 1
			}
			l.QueueDepth += int(float64(n)*size + 0.5)
			l.QueueAge = now.Sub(a.since[m])
		}
		load[m] = l
	}
	return load
}

// selectAuto resolves a "model": "auto" request: it chooses the model and
// priority from the agent's profile and the models' load, and returns the
// body with that model (and the profile's num_ctx when the request sets
// none) and its decoding. it's Priority is lowered to the profile's
// ceiling.
func (d *Dispatcher) selectAuto(ctx context.Context, it *job.Item, body []byte) ([]byte, *request.Request, *wire.Error) {
	a := d.auto
	now := d.now()
	a.mu.Lock()
	a.lastUse = now
	stale := now.Sub(a.refreshed) > autoStaleAfter
	a.mu.Unlock()
	if stale && len(a.models) > 0 {
		d.refreshAutoLoad(ctx, now, autoStaleAfter)
	}
	load := d.AutoLoad(now)
	dec, err := policy.SelectModel(d.cfg.Auto, it.Agent, it.Priority, load)
	if err != nil {
		return nil, nil, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf(`model "auto": no agent profile matches agent %q (dispatcher.auto)`, it.Agent))
	}
	sel := dec.Value
	if load[sel.Model].Unavailable {
		// Every model of the profile is unusable and the default is not
		// even served: say so rather than name a model the agent never
		// asked for.
		return nil, nil, wire.Errorf(wire.CodeModelNotFound, fmt.Sprintf(`model "auto": no worker serves a usable model of profile %s (%s)`, sel.Profile, dec.Reason))
	}
	out, err := autoBody(body, sel.Model, sel.NumCtx)
	if err != nil {
		return nil, nil, wire.Errorf(wire.CodeInvalidRequest, `model "auto": `+err.Error())
	}
	req, err := request.Decode(out, request.Limits{})
	if err != nil {
		return nil, nil, wire.Errorf(wire.CodeInvalidRequest, err.Error())
	}
	it.Priority = sel.Priority
	a.count.WithLabelValues(sel.Profile, sel.Model).Inc()
	a.mu.Lock()
	prev, seen := a.chosen[sel.Profile]
	a.chosen[sel.Profile] = sel.Model
	a.mu.Unlock()
	if !seen || prev != sel.Model {
		// A profile's first choice and every change are decisions worth
		// seeing; the same choice again is only logged at debug.
		if data, err := json.Marshal(dec); err == nil {
			_ = d.nc.Publish(wire.AutoEventSubject(sel.Profile), data)
		}
		d.log.Info("auto model", zap.String("profile", sel.Profile), zap.String("model", sel.Model),
			zap.String("previous", prev), zap.String("priority", string(sel.Priority)), zap.String("reason", dec.Reason))
	}
	d.log.Debug("auto model chosen", zap.String("request_id", it.ID), zap.String("agent", it.Agent),
		zap.String("profile", sel.Profile), zap.String("model", sel.Model), zap.String("reason", dec.Reason))
	return out, req, nil
}

// autoBody returns body with its "model" set to model and, when numCtx is
// positive and the request sets no num_ctx, options.num_ctx set to numCtx.
func autoBody(body []byte, model string, numCtx int) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	m["model"], _ = json.Marshal(model)
	if numCtx > 0 {
		opts := map[string]json.RawMessage{}
		if raw, ok := m["options"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &opts); err != nil {
				return nil, fmt.Errorf("options: %w", err)
			}
		}
		if _, set := opts["num_ctx"]; !set {
			opts["num_ctx"], _ = json.Marshal(numCtx)
			m["options"], _ = json.Marshal(opts)
		}
	}
	return json.Marshal(m)
}
