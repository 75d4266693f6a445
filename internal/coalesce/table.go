package coalesce

import (
	"sync"
	"time"
)

// Table holds one dispatcher's followers, by key, until their leader
// ends. T is what the dispatcher holds for a request (its message). The
// zero value is not usable: use NewTable. Table is safe for concurrent
// use; it does no I/O.
type Table[T any] struct {
	// mu guards groups.
	mu     sync.Mutex
	groups map[string]*group[T]
}

type group[T any] struct {
	leader    string
	since     time.Time
	lastCheck time.Time
	held      []Follower[T]
}

// Follower is a request held for its key's leader.
type Follower[T any] struct {
	ID       string
	Deadline time.Time // zero: none
	Held     T
}

// NewTable returns an empty table.
func NewTable[T any]() *Table[T] { return &Table[T]{groups: map[string]*group[T]{}} }

// HoldLocal holds f for key when this dispatcher already holds a group for
// key led by another request, and reports whether it did: then no claim
// is needed.
func (t *Table[T]) HoldLocal(key string, f Follower[T]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[key]
	if g == nil || g.leader == f.ID {
		return false
	}
	g.held = append(g.held, f)
	return true
}

// Hold records key's leader (from Claims.Claim) and holds f unless f is
// the leader. It reports whether f is held (false: f leads and runs).
func (t *Table[T]) Hold(now time.Time, key, leader string, f Follower[T]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[key]
	if g == nil {
		g = &group[T]{leader: leader, since: now}
		t.groups[key] = g
	}
	if leader == f.ID {
		return false
	}
	g.held = append(g.held, f)
	return true
}

// Take removes key's group when leader leads it (leader "" matches a
// group whose leader is unknown) and returns its followers; nil when
// there is none.
func (t *Table[T]) Take(key, leader string) []Follower[T] {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[key]
	if g == nil || (g.leader != "" && g.leader != leader) {
		return nil
	}
	delete(t.groups, key)
	if g.held == nil {
		return []Follower[T]{}
	}
	return g.held
}

// Remove takes out the first follower match selects, anywhere.
func (t *Table[T]) Remove(match func(Follower[T]) bool) (Follower[T], bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range t.groups {
		for i, h := range g.held {
			if match(h) {
				g.held = append(g.held[:i], g.held[i+1:]...)
				return h, true
			}
		}
	}
	var zero Follower[T]
	return zero, false
}

// Check is a group due for a re-check: its key and leader.
type Check struct{ Key, Leader string }

// Due returns, at now, the followers whose deadline passed (taken out of
// their groups), every other follower (to keep alive), and the groups
// that waited checkAfter and were not checked within checkEvery.
func (t *Table[T]) Due(now time.Time, checkAfter, checkEvery time.Duration) (expired, waiting []Follower[T], checks []Check) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, g := range t.groups {
		kept := g.held[:0]
		for _, h := range g.held {
			if !h.Deadline.IsZero() && !now.Before(h.Deadline) {
				expired = append(expired, h)
				continue
			}
			waiting = append(waiting, h)
			kept = append(kept, h)
		}
		clear(g.held[len(kept):])
		g.held = kept
		if now.Sub(g.since) >= checkAfter && now.Sub(g.lastCheck) >= checkEvery {
			g.lastCheck = now
			checks = append(checks, Check{key, g.leader})
		}
	}
	return expired, waiting, checks
}

// Held returns how many followers are held.
func (t *Table[T]) Held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, g := range t.groups {
		n += len(g.held)
	}
	return n
}

// Each calls fn for every follower held (fn must not call t).
func (t *Table[T]) Each(fn func(key string, f Follower[T])) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, g := range t.groups {
		for _, h := range g.held {
			fn(key, h)
		}
	}
}

// Drain removes every group and returns all followers (shutdown: they are
// handed back to JetStream).
func (t *Table[T]) Drain() []Follower[T] {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []Follower[T]
	for key, g := range t.groups {
		all = append(all, g.held...)
		delete(t.groups, key)
	}
	return all
}
