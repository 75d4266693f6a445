package optimizer

import (
	"sync"
	"time"
)

// maxRepeats caps the failed work a repeats remembers (about 100 bytes
// each): past it the oldest is forgotten first, and a later failure of
// that work counts again, as every failure did before.
const maxRepeats = 10000

// repeats remembers, per model, the work (events.Call.Request) whose
// failure went to the model's breaker within the last window, so that one
// request failing on every attempt and every delivery (a poison request)
// counts as one failure, not one per attempt: a breaker judges the model,
// not one request. It is pure (every call takes now) and safe for
// concurrent use.
type repeats struct {
	window time.Duration
	limit  int

	mu sync.Mutex // guards counted and order
	// counted holds when each work's failure was counted; order the same
	// entries, oldest first, to expire and evict them.
	counted map[repeatKey]time.Time
	order   []repeatEntry
}

type repeatKey struct{ model, work string }

type repeatEntry struct {
	key repeatKey
	at  time.Time
}

// newRepeats returns a repeats whose entries expire after window, holding
// at most limit of them.
func newRepeats(window time.Duration, limit int) *repeats {
	return &repeats{window: window, limit: max(limit, 1), counted: map[repeatKey]time.Time{}}
}

// counts reports whether an outcome of work for model at now goes to the
// breaker: a success always, a failure of work without a name always
// (events of older workers), and otherwise the first failure of work
// within the window only. A success does not clear the work: its earlier
// failure stays counted until it expires.
func (r *repeats) counts(model, work string, ok bool, now time.Time) bool {
	if ok || work == "" {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(now)
	k := repeatKey{model, work}
	if at, seen := r.counted[k]; seen && now.Sub(at) < r.window {
		return false
	}
	for len(r.counted) >= r.limit && len(r.order) > 0 {
		r.pop()
	}
	r.counted[k] = now
	r.order = append(r.order, repeatEntry{k, now})
	return true
}

// len returns how many works are remembered.
func (r *repeats) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.counted)
}

// expire forgets the works counted a window or more before now.
func (r *repeats) expire(now time.Time) {
	for len(r.order) > 0 && now.Sub(r.order[0].at) >= r.window {
		r.pop()
	}
}

// pop forgets the oldest entry; a work counted again since (a clock that
// went back) keeps its newer time.
func (r *repeats) pop() {
	e := r.order[0]
	r.order[0] = repeatEntry{}
	r.order = r.order[1:]
	if at, ok := r.counted[e.key]; ok && at.Equal(e.at) {
		delete(r.counted, e.key)
	}
}
