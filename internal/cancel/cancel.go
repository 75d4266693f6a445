// Package cancel remembers the cancels agents sent (herd.cancel.<agent>.<id>)
// so that a request canceled before it reached a dispatcher or a worker is
// not run. It is bounded: a cancel is kept for a TTL, and at most a fixed
// number of them, the oldest forgotten first, so no agent can grow a
// service's memory by sending cancels.
package cancel

import (
	"sync"
	"time"
)

// Set is the cancels one process remembers. The zero value is not usable:
// use New. Set is safe for concurrent use.
type Set struct {
	ttl time.Duration
	max int
	now func() time.Time

	// mu guards byID and order.
	mu    sync.Mutex
	byID  map[string]entry
	order []string // ids in the order they were added (oldest first), may hold stale ids
}

type entry struct {
	agent string
	at    time.Time
}

// New returns a Set that keeps a cancel for ttl and at most max of them.
func New(ttl time.Duration, max int) *Set {
	return &Set{ttl: ttl, max: max, now: time.Now, byID: map[string]entry{}}
}

// Add records that agent canceled its request id. A cancel of the same id
// by another agent replaces nothing: Canceled checks the agent.
func (s *Set) Add(agent, id string) {
	if s.max < 1 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.prune(now)
	for len(s.byID) >= s.max && len(s.order) > 0 {
		delete(s.byID, s.order[0])
		s.order = s.order[1:]
	}
	if _, ok := s.byID[id]; !ok {
		s.order = append(s.order, id)
	}
	s.byID[id] = entry{agent: agent, at: now}
}

// Canceled reports whether agent canceled its request id within the TTL.
// A cancel sent by another agent does not count.
func (s *Set) Canceled(agent, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	return ok && e.agent == agent && s.now().Sub(e.at) < s.ttl
}

// Len returns how many cancels are remembered.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// prune drops expired cancels from the front of order. s.mu is held.
func (s *Set) prune(now time.Time) {
	for len(s.order) > 0 {
		id := s.order[0]
		e, ok := s.byID[id]
		if ok && now.Sub(e.at) < s.ttl {
			return
		}
		if ok {
			delete(s.byID, id)
		}
		s.order = s.order[1:]
	}
}
