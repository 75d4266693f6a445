package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/provision"
)

// checkEvery is how often the pool looks again without a new decision: an
// instance that ended is replaced, a start that failed is tried again.
const checkEvery = 2 * time.Second

// Member is one running worker instance.
type Member interface {
	// Stop drains the instance and stops it: its worker stops fetching and
	// finishes (or hands back) its batches, then its Ollama stops. It
	// blocks until all of that is done.
	Stop()
	// Done is closed when the instance's worker ended by itself.
	Done() <-chan struct{}
}

// StartFunc starts a worker instance on slot s and returns once it runs.
// ctx bounds the start only; the instance runs until Stop.
type StartFunc func(ctx context.Context, s Slot) (Member, error)

// Pool keeps the planned set of worker instances running. Create it with
// New and run it with Run.
type Pool struct {
	cfg   Config
	cores []int
	start StartFunc
	log   *zap.Logger
	m     *metrics
	// decisions holds the latest decision not yet applied.
	decisions chan int
	// lastErr is the last failed start; only Run's goroutine uses it.
	lastErr error

	// mu guards members.
	mu      sync.Mutex
	members map[int]Member // by slot index
}

// New returns a pool of cfg's instances on cores (Cores() for the host's
// own), started with start. It returns ErrInvalidConfig for a cfg that
// cannot work and ErrNoCores when cores hold no instance. reg (may be nil)
// receives its metrics.
func New(cfg Config, cores []int, start StartFunc, log *zap.Logger, reg prometheus.Registerer) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.CPUs) > 0 {
		cores = cfg.CPUs
	}
	if Capacity(cores, cfg.CoresPerInstance) == 0 {
		return nil, fmt.Errorf("%w: %d cores %v, %d per instance", ErrNoCores, len(cores), cores, cfg.CoresPerInstance)
	}
	return &Pool{
		cfg: cfg, cores: slices.Clone(cores), start: start, log: log.Named("pool"), m: newMetrics(reg),
		decisions: make(chan int, 1), members: map[int]Member{},
	}, nil
}

// Bounds returns the fewest and most instances the pool runs in auto mode.
func (p *Pool) Bounds() (lo, hi int) { return Bounds(p.input(0)) }

// Decide hands the pool the optimizer's decision. It does not block: a
// decision not yet applied is replaced. A fixed pool ignores it.
func (p *Pool) Decide(n int) {
	for {
		select {
		case p.decisions <- n:
			return
		default:
		}
		select {
		case <-p.decisions:
		default:
		}
	}
}

// Watch feeds Decide from kv's instances key until ctx ends, skipping
// decisions made before since (left in herd_control by an earlier run).
// It blocks.
func (p *Pool) Watch(ctx context.Context, kv jetstream.KeyValue, since time.Time) {
	provision.Watch(ctx, kv, control.InstancesKey, func(e jetstream.KeyValueEntry) {
		var d control.Instances
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &d) != nil {
			return
		}
		if d.At.Before(since) {
			p.log.Info("instances decision from before this start ignored", zap.Int("recommended", d.Recommended), zap.Time("at", d.At))
			return
		}
		p.Decide(d.Recommended)
	})
}

// Slots returns the slots of the running instances, by index.
func (p *Pool) Slots() []Slot {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Slot
	for _, i := range slices.Sorted(maps.Keys(p.members)) {
		out = append(out, SlotOf(p.cores, p.cfg.CoresPerInstance, i))
	}
	return out
}

// Run starts the planned instances, then applies every decision (and
// replaces instances that ended) until ctx ends; then it drains and stops
// every instance and returns. It returns an error only when not one
// instance could be started at first.
func (p *Pool) Run(ctx context.Context) error {
	defer p.stopAll()
	want := 0
	if !p.cfg.Auto() {
		want = p.cfg.Fixed()
	}
	p.apply(ctx, want)
	if len(p.Slots()) == 0 {
		if err := ctx.Err(); err != nil {
			return nil
		}
		return p.lastErr
	}
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-p.decisions:
			if p.cfg.Auto() {
				want = n
			}
		case <-tick.C:
		}
		p.reap()
		p.apply(ctx, want)
	}
}

func (p *Pool) input(want int) Input {
	p.mu.Lock()
	running := slices.Sorted(maps.Keys(p.members))
	p.mu.Unlock()
	return Input{
		Auto: p.cfg.Auto(), Want: want, Cores: p.cores, CoresPerInstance: p.cfg.CoresPerInstance,
		Min: p.cfg.MinInstances, Max: p.cfg.MaxInstances, Running: running,
	}
}

// apply moves the running instances to the plan for want: drains the
// ones to stop first (their cores are freed), then starts the new ones.
func (p *Pool) apply(ctx context.Context, want int) {
	t := Plan(p.input(want))
	p.m.target.Set(float64(t.Count))
	if len(t.Start) == 0 && len(t.Stop) == 0 {
		return
	}
	p.log.Info("resizing", zap.Int("running", len(p.Slots())), zap.Int("target", t.Count), zap.String("reason", t.Reason))
	for _, s := range t.Stop {
		p.mu.Lock()
		m := p.members[s.Index]
		delete(p.members, s.Index)
		p.mu.Unlock()
		if m == nil {
			continue
		}
		begin := time.Now()
		p.log.Info("draining instance", zap.Int("slot", s.Index), zap.Ints("cpus", s.CPUs))
		m.Stop()
		p.m.changes.WithLabelValues("stop").Inc()
		p.m.instances.Set(float64(len(p.Slots())))
		p.log.Info("instance stopped", zap.Int("slot", s.Index), zap.Duration("took", time.Since(begin)))
	}
	for _, s := range t.Start {
		if ctx.Err() != nil {
			return
		}
		begin := time.Now()
		m, err := p.start(ctx, s)
		if err != nil {
			p.lastErr = fmt.Errorf("start instance %d on cpus %v: %w", s.Index, s.CPUs, err)
			p.m.changes.WithLabelValues("start_failed").Inc()
			p.log.Error("instance not started; trying again later", zap.Int("slot", s.Index), zap.Ints("cpus", s.CPUs), zap.Error(err))
			return
		}
		p.mu.Lock()
		p.members[s.Index] = m
		p.mu.Unlock()
		p.m.changes.WithLabelValues("start").Inc()
		p.m.instances.Set(float64(len(p.Slots())))
		p.log.Info("instance started", zap.Int("slot", s.Index), zap.Ints("cpus", s.CPUs), zap.Duration("took", time.Since(begin)))
	}
}

// reap stops and forgets the instances whose worker ended by itself, so
// that apply starts them again.
func (p *Pool) reap() {
	p.mu.Lock()
	var ended []int
	for i, m := range p.members {
		select {
		case <-m.Done():
			ended = append(ended, i)
		default:
		}
	}
	ms := make([]Member, 0, len(ended))
	for _, i := range ended {
		ms = append(ms, p.members[i])
		delete(p.members, i)
	}
	p.mu.Unlock()
	for k, m := range ms {
		p.log.Warn("instance ended; starting it again", zap.Int("slot", ended[k]))
		m.Stop()
	}
}

// stopAll drains and stops every instance, in parallel.
func (p *Pool) stopAll() {
	p.mu.Lock()
	ms := p.members
	p.members = map[int]Member{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.Stop)
	}
	wg.Wait()
	p.m.instances.Set(0)
}
