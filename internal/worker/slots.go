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
// normal and low never hold the slots reserved for high.
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
	waiters [3][]chan struct{}
	freed   chan struct{}
}

func newSlotPool(limits sched.Slots, cfg sched.Config) *slotPool {
	return &slotPool{limits: limits, pol: sched.New(cfg, time.Now()), freed: make(chan struct{}, 1)}
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

func (s *slotPool) claim(p wire.Priority, n int) {
	s.mu.Lock()
	s.claimed[p.Index()] += n
	s.mu.Unlock()
}

// unclaim gives back claims for calls that will not run.
func (s *slotPool) unclaim(p wire.Priority, n int) {
	s.mu.Lock()
	s.claimed[p.Index()] -= n
	s.mu.Unlock()
	s.signal()
}

// acquire blocks until a slot for p is free or ctx ends.
func (s *slotPool) acquire(ctx context.Context, p wire.Priority) error {
	s.mu.Lock()
	if s.noneWaitingBefore(p) && s.limits.Free(p, s.running, s.runningShared) > 0 {
		s.take(p)
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	i := p.Index()
	s.waiters[i] = append(s.waiters[i], ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		for j, w := range s.waiters[i] {
			if w == ch {
				s.waiters[i] = append(s.waiters[i][:j], s.waiters[i][j+1:]...)
				return ctx.Err()
			}
		}
		// Granted while giving up: hand the slot on.
		s.giveBack(p)
		return ctx.Err()
	}
}

func (s *slotPool) noneWaitingBefore(p wire.Priority) bool {
	for i := 0; i <= p.Index(); i++ {
		if len(s.waiters[i]) > 0 {
			return false
		}
	}
	return true
}

func (s *slotPool) take(p wire.Priority) {
	s.running++
	if p != wire.High {
		s.runningShared++
	}
	s.pol.Served(p, time.Now())
}

// release frees the slot of a finished call of p.
func (s *slotPool) release(p wire.Priority) {
	s.mu.Lock()
	s.claimed[p.Index()]--
	s.giveBack(p)
	s.mu.Unlock()
	s.signal()
}

// giveBack frees a slot and grants waiting calls; mu must be held.
func (s *slotPool) giveBack(p wire.Priority) {
	s.running--
	if p != wire.High {
		s.runningShared--
	}
	now := time.Now()
	for _, q := range s.pol.Order(now) {
		i := q.Index()
		for len(s.waiters[i]) > 0 && s.limits.Free(q, s.running, s.runningShared) > 0 {
			ch := s.waiters[i][0]
			s.waiters[i] = s.waiters[i][1:]
			s.take(q)
			close(ch)
		}
		if len(s.waiters[i]) == 0 {
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
