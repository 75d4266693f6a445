package optimizer

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/window"
	"github.com/sutazai/herd/internal/wire"
)

// maxArrivals is how many arrival times per model the keep-alive decision
// keeps.
const maxArrivals = 500

// fleet is what the optimizer knows of the workers and decides for them:
// the slot allocation (policy.Budgeter), the recommended instances
// (policy.Scaler), keep_alive per model and unloads per worker
// (policy.KeepAlive, policy.Unload).
type fleet struct {
	cfg      Config
	priority map[string]bool

	// mu guards everything below.
	mu      sync.Mutex
	workers map[string]events.Worker // latest report by worker id
	// reports counts the reports observed and evaluated the count at the
	// last budget evaluation: the budget is evaluated once per new
	// report, so that persist counts observations, not ticks.
	reports, evaluated int64
	// lastLive is the number of live workers at the last evaluation: a
	// worker gone also calls for one.
	lastLive int
	arrivals map[string][]time.Time // worker-run requests by model
	budgeter *policy.Budgeter
	scaler   *policy.Scaler
	// decided holds the decisions in force (as written to herd_control).
	budget    control.Budget
	instances control.Instances
	keepAlive map[string]control.KeepAlive
	unloads   map[string]control.Unload // by worker
	// preloads are the latest preload decision of each worker, and
	// preloaded the due time each (worker, model) was last preloaded for
	// (preload.go).
	preloads  map[string]control.Preload
	preloaded map[preloadKey]time.Time
	// sizes are the memory each model held when a worker last reported it
	// loaded.
	sizes map[string]int64
	// gone are the workers live forgot since takeGone, whose gauges go.
	gone []string
}

func newFleet(cfg Config) *fleet {
	f := &fleet{
		cfg: cfg, priority: map[string]bool{},
		workers: map[string]events.Worker{}, arrivals: map[string][]time.Time{},
		budgeter: policy.NewBudgeter(cfg.Budget), scaler: policy.NewScaler(cfg.Scale),
		keepAlive: map[string]control.KeepAlive{}, unloads: map[string]control.Unload{},
		preloads: map[string]control.Preload{}, preloaded: map[preloadKey]time.Time{}, sizes: map[string]int64{},
	}
	for _, m := range cfg.PriorityModels {
		f.priority[m] = true
	}
	return f
}

// observeWorker records a worker's heartbeat.
func (f *fleet) observeWorker(e events.Worker) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.workers[e.ID]; ok && old.At.After(e.At) {
		return
	}
	f.workers[e.ID] = e
	f.reports++
}

// observeRequest records the arrival of a request a worker ran.
func (f *fleet) observeRequest(e events.Request) {
	if e.Dispatcher || e.At.IsZero() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := append(f.arrivals[e.Model], e.At.Add(-time.Duration(e.TotalMs)*time.Millisecond))
	if len(a) > maxArrivals {
		a = slices.Delete(a, 0, len(a)-maxArrivals)
	}
	f.arrivals[e.Model] = a
}

// live returns the reports of workers heard from within WorkerTimeout,
// forgetting the others and their unload decisions (worker ids are new at
// every start); mu must be held.
func (f *fleet) live(now time.Time) []events.Worker {
	var out []events.Worker
	for id, w := range f.workers {
		if now.Sub(w.At) > f.cfg.WorkerTimeout {
			delete(f.workers, id)
			delete(f.unloads, id)
			f.forgetPreloads(id)
			f.gone = append(f.gone, id)
			continue
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b events.Worker) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// takeGone returns the workers forgotten since the last call.
func (f *fleet) takeGone() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.gone
	f.gone = nil
	return g
}

// Demand returns each served model's demand at now from the workers'
// reports: calls running, calls waiting for a slot and the oldest wait
// (carried forward from the report), and the throughput of the window.
func Demand(workers []events.Worker, win *window.Windows, now time.Time) map[string]policy.Demand {
	d := map[string]policy.Demand{}
	for _, w := range workers {
		for _, m := range w.Models {
			x := d[m]
			l := w.Load[m]
			x.BusySlots += l.Busy
			x.QueueDepth += l.Waiting
			if l.Waiting > 0 {
				age := time.Duration(l.OldestWaitMs)*time.Millisecond + max(now.Sub(w.At), 0)
				x.QueueAge = max(x.QueueAge, age)
			}
			d[m] = x
		}
	}
	if win != nil {
		for m, x := range d {
			st := win.Stats(window.Key{Model: m}, now)
			x.Throughput, x.ErrorRate = st.Throughput, st.ErrorRate
			d[m] = x
		}
	}
	return d
}

// withBreakers marks the models whose breaker is not closed as failing,
// with the probes their half-open state lets out: their retries and
// queues are not demand the budget follows.
func withBreakers(d map[string]policy.Demand, breakers []breaker.Status, probes int) {
	for _, b := range breakers {
		if x, ok := d[b.Model]; ok && b.State != breaker.Closed {
			x.Failing, x.Probes = true, probes
			d[b.Model] = x
		}
	}
}

// served returns the models the live workers serve.
func (f *fleet) served(now time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	set := map[string]bool{}
	for _, w := range f.live(now) {
		for _, m := range w.Models {
			set[m] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// decideBudget evaluates the allocation and the recommended instances at
// now, with the batches waiting in HERD_BATCH (may be nil) and the
// breakers' states (may be nil), when a worker reported since the last
// evaluation. It returns the new allocation and recommendation when they
// changed (nil otherwise).
func (f *fleet) decideBudget(now time.Time, win *window.Windows, waiting map[string]backlog, breakers []breaker.Status) (*control.Budget, *control.Instances) {
	f.mu.Lock()
	defer f.mu.Unlock()
	workers := f.live(now)
	if len(workers) == 0 || (f.reports == f.evaluated && len(workers) == f.lastLive) {
		return nil, nil
	}
	f.evaluated, f.lastLive = f.reports, len(workers)
	total := 0
	for _, w := range workers {
		total += w.Slots
	}
	demand := Demand(workers, win, now)
	withBacklog(demand, waiting)
	withBreakers(demand, breakers, f.cfg.Breaker.HalfOpenProbes)
	current := map[string]int{}
	for m := range demand {
		current[m] = f.budget.Slots[m]
	}
	d := f.budgeter.Evaluate(now, policy.BudgetInput{Total: total, Current: current, Demand: demand})
	var budget *control.Budget
	if d.Changed || f.budget.Total != total {
		b := control.Budget{Total: total, Slots: d.Value.Slots, At: now, Reason: d.Reason, Numbers: d.Numbers}
		for _, mv := range d.Value.Moves {
			b.Moves = append(b.Moves, control.Move{From: mv.From, To: mv.To})
		}
		f.budget = b
		budget = &b
	}
	s := f.scaler.Evaluate(now, policy.ScaleInput{Instances: len(workers), SlotsPerInstance: max(total/len(workers), 1), Demand: demand})
	var inst *control.Instances
	if s.Changed || f.instances.Recommended != s.Value {
		n := control.Instances{Recommended: s.Value, Running: len(workers), At: now, Reason: s.Reason, Numbers: s.Numbers}
		f.instances = n
		inst = &n
	}
	return budget, inst
}

// decideKeepAlive evaluates each served model's keep_alive at now and
// returns the changed ones.
func (f *fleet) decideKeepAlive(now time.Time) []control.KeepAlive {
	f.mu.Lock()
	defer f.mu.Unlock()
	served := map[string]bool{}
	for _, w := range f.live(now) {
		for _, m := range w.Models {
			served[m] = true
		}
	}
	var out []control.KeepAlive
	for _, m := range slices.Sorted(maps.Keys(served)) {
		a := f.arrivals[m]
		// Only arrivals within the windows' retention count.
		for len(a) > 0 && now.Sub(a[0]) > f.cfg.Window.Retention {
			a = a[1:]
		}
		f.arrivals[m] = a
		cur := f.keepAlive[m]
		d := policy.KeepAlive(f.cfg.Warmth, m, policy.KeepAliveInput{Current: cur.KeepAlive, Priority: f.priority[m], Gaps: policy.InterArrivals(a)})
		if !d.Changed {
			continue
		}
		k := control.KeepAlive{Model: m, KeepAlive: d.Value, At: now, Reason: d.Reason, Numbers: d.Numbers}
		f.keepAlive[m] = k
		out = append(out, k)
	}
	return out
}

// decideUnloads evaluates, for each live worker with a report newer than
// its last unload decision, which idle models to unload from its Ollama.
func (f *fleet) decideUnloads(now time.Time) []control.Unload {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []control.Unload
	for _, w := range f.live(now) {
		if w.MemTotalBytes <= 0 || !w.At.After(f.unloads[w.ID].At) {
			continue
		}
		// Models named by a recent decision are being unloaded: they do
		// not count as loaded, nor does their memory, so they are not
		// named twice and do not make the next idle model go too.
		prev := f.unloads[w.ID]
		pending := map[string]bool{}
		if now.Sub(prev.At) < control.UnloadMaxAge {
			for _, m := range prev.Models {
				pending[m] = true
			}
		}
		used := w.MemUsedBytes
		loaded := map[string]events.Loaded{}
		for _, l := range w.Loaded {
			if pending[l.Model] {
				used -= l.SizeBytes
				continue
			}
			loaded[l.Model] = l
		}
		var models []policy.ModelState
		for _, m := range w.Models {
			l, ok := loaded[m]
			load := w.Load[m]
			models = append(models, policy.ModelState{Name: m, Priority: f.priority[m], Loaded: ok, SizeBytes: l.SizeBytes,
				LastUsed: load.LastUsed, Running: load.Busy + load.Waiting})
		}
		d := policy.Unload(f.cfg.Warmth, now, policy.MemoryInput{UsedBytes: max(used, 0), TotalBytes: w.MemTotalBytes, Models: models})
		if !d.Changed {
			continue
		}
		u := control.Unload{Worker: w.ID, Models: d.Value, At: now, Reason: d.Reason, Numbers: d.Numbers}
		f.unloads[w.ID] = u
		out = append(out, u)
	}
	return out
}

// Decisions are the fleet decisions in force, for reports.
type Decisions struct {
	// Budget is the slot allocation (zero before the first).
	Budget control.Budget `json:"budget"`
	// Instances is the recommended number of worker instances.
	Instances control.Instances `json:"instances"`
	// KeepAlive is each model's keep_alive decision.
	KeepAlive []control.KeepAlive `json:"keep_alive,omitempty"`
	// Unloads are the latest unload decision of each worker.
	Unloads []control.Unload `json:"unloads,omitempty"`
	// Preloads are the latest preload decision of each worker.
	Preloads []control.Preload `json:"preloads,omitempty"`
}

// decisions returns a copy of the decisions in force.
func (f *fleet) decisions() Decisions {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := Decisions{Budget: f.budget, Instances: f.instances}
	d.Budget.Slots = maps.Clone(f.budget.Slots)
	for _, m := range slices.Sorted(maps.Keys(f.keepAlive)) {
		d.KeepAlive = append(d.KeepAlive, f.keepAlive[m])
	}
	for _, id := range slices.Sorted(maps.Keys(f.unloads)) {
		d.Unloads = append(d.Unloads, f.unloads[id])
	}
	for _, id := range slices.Sorted(maps.Keys(f.preloads)) {
		d.Preloads = append(d.Preloads, f.preloads[id])
	}
	return d
}

// Decisions returns the budget, instance, keep_alive, unload and preload
// decisions in force, as written to herd_control.
func (s *Service) Decisions() Decisions { return s.fleet.decisions() }

// EventSubject returns the subject a decision of kind about model is
// announced on: herd.events.<kind>.<encoded model>, or herd.events.<kind>
// for a fleet-wide one (model "").
func EventSubject(kind policy.Kind, model string) string {
	if model == "" {
		return wire.EventsPrefix + "." + string(kind)
	}
	return wire.EventsPrefix + "." + string(kind) + "." + wire.EncodeModel(model)
}

// loadFleet reads the decisions an earlier optimizer left in herd_control,
// so that the allocation continues from them and keep_alive is not
// re-announced.
func (s *Service) loadFleet(ctx context.Context) {
	f := s.fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, err := s.control.Get(ctx, control.BudgetKey); err == nil {
		var b control.Budget
		if json.Unmarshal(e.Value(), &b) == nil {
			f.budget = b
		}
	}
	if e, err := s.control.Get(ctx, control.InstancesKey); err == nil {
		var n control.Instances
		if json.Unmarshal(e.Value(), &n) == nil {
			f.instances = n
		}
	}
	for _, e := range s.decisions(ctx, control.KeepAlivePrefix) {
		var d control.KeepAlive
		if json.Unmarshal(e.Value(), &d) == nil && d.Model != "" {
			f.keepAlive[d.Model] = d
		}
	}
}

// unwrittenDecision is a decision put could not write, kept to write again.
type unwrittenDecision struct {
	data     []byte
	subjects []string
}

// put writes one decision to herd_control and announces it on each
// subject; a failed write is logged, counted and kept in s.unwritten to
// be written again on the next tick (the fleet holds it as decided and
// does not decide it again), unless a newer decision of key replaces it.
func (s *Service) put(key string, data []byte, subjects ...string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := s.control.Put(ctx, key, data)
	cancel()
	if err != nil {
		s.m.applyErrors.Inc()
		s.log.Error("write decision", zap.String("key", key), zap.Error(err))
		if s.unwritten == nil {
			s.unwritten = map[string]unwrittenDecision{}
		}
		s.unwritten[key] = unwrittenDecision{data: data, subjects: subjects}
		return false
	}
	delete(s.unwritten, key)
	for _, subj := range subjects {
		if err := s.nc.Publish(subj, data); err != nil {
			s.log.Warn("announce decision", zap.String("subject", subj), zap.Error(err))
		}
	}
	return true
}

// decideFleet makes and applies the fleet decisions at now.
func (s *Service) decideFleet(now time.Time) {
	f := s.fleet
	for _, key := range slices.Sorted(maps.Keys(s.unwritten)) {
		u := s.unwritten[key]
		if s.put(key, u.data, u.subjects...) {
			s.log.Info("decision written after a failed write", zap.String("key", key))
		}
	}
	budget, inst := f.decideBudget(now, s.win, s.backlogs(f.served(now), now), s.set.Snapshot(now))
	if budget != nil {
		var subjects []string
		changed := map[string]bool{}
		for _, mv := range budget.Moves {
			changed[mv.From], changed[mv.To] = true, true
		}
		for _, m := range slices.Sorted(maps.Keys(budget.Slots)) {
			s.m.budgetSlots.WithLabelValues(m).Set(float64(budget.Slots[m]))
			if len(budget.Moves) == 0 || changed[m] {
				subjects = append(subjects, EventSubject(policy.KindBudget, m))
			}
		}
		s.m.budgetTotal.Set(float64(budget.Total))
		to := "resized"
		if len(budget.Moves) > 0 {
			to = "moved"
		}
		if s.put(control.BudgetKey, budget.Marshal(), subjects...) {
			s.m.decisions.WithLabelValues(string(policy.KindBudget), to).Inc()
			s.log.Info("budget decision", zap.Int("total", budget.Total), zap.Any("slots", budget.Slots), zap.String("reason", budget.Reason))
		}
	}
	if inst != nil {
		s.m.instances.Set(float64(inst.Recommended))
		if s.put(control.InstancesKey, inst.Marshal(), EventSubject(policy.KindInstances, "")) {
			s.m.decisions.WithLabelValues(string(policy.KindInstances), "changed").Inc()
			s.log.Info("instances decision", zap.Int("recommended", inst.Recommended), zap.Int("running", inst.Running), zap.String("reason", inst.Reason))
		}
	}
	for _, k := range f.decideKeepAlive(now) {
		s.m.keepAlive.WithLabelValues(k.Model).Set(k.KeepAlive.Seconds())
		if s.put(control.KeepAliveKey(k.Model), k.Marshal(), EventSubject(policy.KindKeepAlive, k.Model)) {
			s.m.decisions.WithLabelValues(string(policy.KindKeepAlive), "changed").Inc()
			s.log.Info("keep_alive decision", zap.String("model", k.Model), zap.Duration("keep_alive", k.KeepAlive), zap.String("reason", k.Reason))
		}
	}
	for _, u := range f.decideUnloads(now) {
		var subjects []string
		for _, m := range u.Models {
			subjects = append(subjects, EventSubject(policy.KindUnload, m))
		}
		if s.put(control.UnloadKey(u.Worker), u.Marshal(), subjects...) {
			for _, m := range u.Models {
				s.m.unloads.WithLabelValues(m).Inc()
			}
			s.m.decisions.WithLabelValues(string(policy.KindUnload), "changed").Inc()
			s.log.Info("unload decision", zap.String("worker", u.Worker), zap.Strings("models", u.Models), zap.String("reason", u.Reason))
		}
	}
	s.applyPreloads(f.decidePreloads(now))
	for _, id := range f.takeGone() {
		s.m.memoryUse.DeleteLabelValues(id)
	}
}
