package batch

import "time"

// Batcher accumulates items of type T under keys of type K. It is not safe
// for concurrent use.
type Batcher[K comparable, T any] struct {
	size    int
	maxWait time.Duration
	open    map[K]*pending[T]
}

type pending[T any] struct {
	since time.Time
	items []T
}

// Batch is a closed batch.
type Batch[K comparable, T any] struct {
	Key   K
	Items []T
}

// New returns a batcher of batches of up to size items (at least 1) that
// wait at most maxWait.
func New[K comparable, T any](size int, maxWait time.Duration) *Batcher[K, T] {
	return &Batcher[K, T]{size: max(size, 1), maxWait: maxWait, open: map[K]*pending[T]{}}
}

// Add adds item under key at now. It returns the batch when this item
// filled it, and ok false otherwise.
func (b *Batcher[K, T]) Add(now time.Time, key K, item T) (Batch[K, T], bool) {
	p := b.open[key]
	if p == nil {
		p = &pending[T]{since: now, items: make([]T, 0, b.size)}
		b.open[key] = p
	}
	p.items = append(p.items, item)
	if len(p.items) >= b.size {
		delete(b.open, key)
		return Batch[K, T]{Key: key, Items: p.items}, true
	}
	return Batch[K, T]{}, false
}

// Due closes and returns the batches whose oldest item has waited maxWait
// at now.
func (b *Batcher[K, T]) Due(now time.Time) []Batch[K, T] {
	var out []Batch[K, T]
	for k, p := range b.open {
		if now.Sub(p.since) >= b.maxWait {
			out = append(out, Batch[K, T]{Key: k, Items: p.items})
			delete(b.open, k)
		}
	}
	return out
}

// Flush closes and returns every open batch.
func (b *Batcher[K, T]) Flush() []Batch[K, T] {
	out := make([]Batch[K, T], 0, len(b.open))
	for k, p := range b.open {
		out = append(out, Batch[K, T]{Key: k, Items: p.items})
		delete(b.open, k)
	}
	return out
}

// UntilNext returns how long until the next batch is due at now, and false
// when no batch is open.
func (b *Batcher[K, T]) UntilNext(now time.Time) (time.Duration, bool) {
	var next time.Duration
	found := false
	for _, p := range b.open {
		d := max(b.maxWait-now.Sub(p.since), 0)
		if !found || d < next {
			next, found = d, true
		}
	}
	return next, found
}

// Remove drops the first open item for which match is true and reports
// whether it found one (used to cancel a request before its batch closes).
func (b *Batcher[K, T]) Remove(match func(T) bool) (T, bool) {
	for k, p := range b.open {
		for i, it := range p.items {
			if match(it) {
				p.items = append(p.items[:i], p.items[i+1:]...)
				if len(p.items) == 0 {
					delete(b.open, k)
				}
				return it, true
			}
		}
	}
	var zero T
	return zero, false
}

// Len returns the number of items waiting in open batches.
func (b *Batcher[K, T]) Len() int {
	n := 0
	for _, p := range b.open {
		n += len(p.items)
	}
	return n
}
