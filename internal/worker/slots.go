package worker

import (
	"context"
	"sync"
	"time"

	"github.com/sutazai/herd/internal/sched"
	"github.com/sutazai/herd/internal/wire"
)

// slotPool hands out the worker's call slots: a freed slot goes to the
// waiting call the priority policy picks (high first, with ageing), and
// normal and low never hold the slots reserved for high. A model may also
// have a limit on its running calls (the optimizer's CPU budget): a call
// of a model at its limit waits without holding back the calls of other
// models.
type slotPool struct {
	limits sched.Slots
	// mu guards everything below.
	mu            sync.Mutex
	pol           *sched.Policy
	running       int
	runningShared int
	// claimed counts calls taken from HERD_BATCH and not finished, per
	// priority; it decides whether to fetch more.
	claimed [3]int
	waiters [3][]*waiter
	freed   chan struct{}
	// models holds each model's limit, running, claimed and waiting calls.
	models map[string]*modelSlots
}

// waiter is a call waiting for a slot.
type waiter struct {
	ch    chan struct{}
	model string
	since time.Time
}

// modelSlots is one model's calls.
type modelSlots struct {
	// limit is the most calls of the model at once; 0 means no limit.
	limit            int
	running, claimed int
	lastUsed         time.Time
}

// modelLoad is a model's calls at one moment.
type modelLoad struct {
	limit, running, waiting int
	oldestWait              time.Duration
	lastUsed                time.Time
}

func newSlotPool(limits sched.Slots, cfg sched.Config) *slotPool {
	return &slotPool{limits: limits, pol: sched.New(cfg, time.Now()), freed: make(chan struct{}, 1), models: map[string]*modelSlots{}}
}

// model returns model's state; mu must be held.
func (s *slotPool) model(model string) *modelSlots {
	m := s.models[model]
	if m == nil {
		m = &modelSlots{}
		s.models[model] = m
	}
	return m
}

// roomFor reports whether a call of model may start as far as its limit
// goes; mu must be held.
func (s *slotPool) roomFor(model string) bool {
	m := s.models[model]
	return m == nil || m.limit <= 0 || m.running < m.limit
}

// setLimits sets each model's call limit (models missing: none) and grants
// waiting calls that a raised limit lets start.
func (s *slotPool) setLimits(limits map[string]int) {
	s.mu.Lock()
	for name, m := range s.models {
		m.limit = limits[name]
	}
	for name, n := range limits {
		s.model(name).limit = n
	}
	s.grant()
	s.mu.Unlock()
	s.signal()
}

// canFetch returns how many more calls of priority p may be claimed (0:
// fetch nothing).
// High may claim calls up to twice the slots (one batch running, one
// ready). Normal and low may claim calls up to the slots high does not
// keep, plus one batch ready, and only while no high call waits here,
// unless the policy put them first (aged): so a freed slot goes to high
// work still queued in HERD_BATCH rather than to low work fetched early.
func (s *slotPool) canFetch(p wire.Priority, aged bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == wire.High {
		return max(2*s.limits.Total-s.claimed[0], 0)
	}
	if !aged && s.claimed[0] > 0 {
		return 0
	}
	shared := s.claimed[1] + s.claimed[2]
	return max(2*(s.limits.Total-s.limits.ReservedHigh)-shared, 0)
}

// canFetchModel reports whether more calls of model may be claimed: a
// model with a limit claims at most twice its limit, so that its queue
// does not take the claims of the other models.
func (s *slotPool) canFetchModel(model string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[model]
	return m == nil || m.limit <= 0 || m.claimed < 2*m.limit
}

func (s *slotPool) claim(p wire.Priority, model string, n int) {
	s.mu.Lock()
	s.claimed[p.Index()] += n
	s.model(model).claimed += n
	s.mu.Unlock()
}

// unclaim gives back claims for calls that will not run.
func (s *slotPool) unclaim(p wire.Priority, model string, n int) {
	s.mu.Lock()
	s.claimed[p.Index()] -= n
	s.model(model).claimed -= n
	s.mu.Unlock()
	s.signal()
}

// acquire blocks until a slot for a call of model at p is free or ctx
// ends.
func (s *slotPool) acquire(ctx context.Context, p wire.Priority, model string) error {
	s.mu.Lock()
	if s.noneWaitingBefore(p) && s.limits.Free(p, s.running, s.runningShared) > 0 && s.roomFor(model) {
		s.take(p, model)
		s.mu.Unlock()
		return nil
	}
	w := &waiter{ch: make(chan struct{}), model: model, since: time.Now()}
	i := p.Index()
	s.waiters[i] = append(s.waiters[i], w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		for j, x := range s.waiters[i] {
			if x == w {
				s.waiters[i] = append(s.waiters[i][:j], s.waiters[i][j+1:]...)
				return ctx.Err()
			}
		}
		// Granted while giving up: hand the slot on.
		s.giveBack(p, model)
		return ctx.Err()
	}
}

// noneWaitingBefore reports whether no call of priority p or higher that
// could start now waits; mu must be held.
func (s *slotPool) noneWaitingBefore(p wire.Priority) bool {
	for i := 0; i <= p.Index(); i++ {
		for _, w := range s.waiters[i] {
			if s.roomFor(w.model) {
				return false
			}
		}
	}
	return true
}

func (s *slotPool) take(p wire.Priority, model string) {
	s.running++
	if p != wire.High {
		s.runningShared++
	}
	s.model(model).running++
	s.pol.Served(p, time.Now())
}

// release frees the slot of a finished call of model at p.
func (s *slotPool) release(p wire.Priority, model string) {
	s.mu.Lock()
	s.claimed[p.Index()]--
	m := s.model(model)
	m.claimed--
	m.lastUsed = time.Now()
	s.giveBack(p, model)
	s.mu.Unlock()
	s.signal()
}

// giveBack frees a slot and grants waiting calls; mu must be held.
func (s *slotPool) giveBack(p wire.Priority, model string) {
	s.running--
	if p != wire.High {
		s.runningShared--
	}
	s.model(model).running--
	s.grant()
}

// grant starts waiting calls while slots are free, in the policy's order,
// skipping calls whose model is at its limit; mu must be held.
func (s *slotPool) grant() {
	now := time.Now()
	for _, q := range s.pol.Order(now) {
		i := q.Index()
		kept := s.waiters[i][:0]
		for _, w := range s.waiters[i] {
			if s.limits.Free(q, s.running, s.runningShared) > 0 && s.roomFor(w.model) {
				s.take(q, w.model)
				close(w.ch)
				continue
			}
			kept = append(kept, w)
		}
		clear(s.waiters[i][len(kept):])
		s.waiters[i] = kept
		if len(kept) == 0 {
			s.pol.Served(q, now)
		}
	}
}

func (s *slotPool) signal() {
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// busy returns the running calls.
func (s *slotPool) busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// load returns each model's calls at now.
func (s *slotPool) load(now time.Time) map[string]modelLoad {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]modelLoad, len(s.models))
	for name, m := range s.models {
		out[name] = modelLoad{limit: m.limit, running: m.running, lastUsed: m.lastUsed}
	}
	for i := range s.waiters {
		for _, w := range s.waiters[i] {
			l := out[w.model]
			l.waiting++
			l.oldestWait = max(l.oldestWait, now.Sub(w.since))
			out[w.model] = l
		}
	}
	return out
}
