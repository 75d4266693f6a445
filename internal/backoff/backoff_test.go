package backoff

import (
	"math"
	"testing"
	"time"
)

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		u    float64
		want time.Duration
	}{
		{100 * time.Millisecond, 0, 50 * time.Millisecond},
		{100 * time.Millisecond, 0.5, 75 * time.Millisecond},
		{100 * time.Millisecond, 0.999999, 99999950 * time.Nanosecond},
		{time.Nanosecond, 0, 0},
		{3 * time.Nanosecond, 0.9, 2 * time.Nanosecond},
		{0, 0.5, 0},
		{-time.Second, 0.5, -time.Second},
	} {
		if got := equal(tc.d, tc.u); got != tc.want {
			t.Errorf("equal(%v, %v) = %v, want %v", tc.d, tc.u, got, tc.want)
		}
	}
	// No overflow at the top.
	if got := equal(math.MaxInt64, 0.999999); got < math.MaxInt64/2 || got < 0 {
		t.Errorf("equal(MaxInt64, 0.999999) = %d, outside [MaxInt64/2, MaxInt64]", got)
	}
}

// TestJitter: waits stay in [d/2, d] and are spread out, not one value.
func TestJitter(t *testing.T) {
	const d = time.Second
	seen := map[time.Duration]bool{}
	for range 1000 {
		w := Jitter(d)
		if w < d/2 || w > d {
			t.Fatalf("Jitter(%v) = %v, outside [%v, %v]", d, w, d/2, d)
		}
		seen[w] = true
	}
	if len(seen) < 100 {
		t.Errorf("1000 draws gave %d distinct waits: not jittered", len(seen))
	}
}
