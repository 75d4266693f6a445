package optimizer

import (
	"fmt"
	"testing"
	"time"
)

func TestRepeats(t *testing.T) {
	const window = 30 * time.Second
	type step struct {
		at          time.Duration // after the start
		model, work string
		ok          bool
		want        bool // counts for the breaker
	}
	fail := func(at time.Duration, work string, want bool) step {
		return step{at: at, model: "big", work: work, want: want}
	}
	var poison []step
	for i := range 15 {
		poison = append(poison, fail(time.Duration(i)*time.Second, "poison", i == 0))
	}
	for _, tc := range []struct {
		name  string
		limit int
		steps []step
		// remembered is how many works are held at the end.
		remembered int
	}{
		{name: "same request failing 15 times counts once", limit: 100, steps: poison, remembered: 1},
		{name: "different requests count each", limit: 100, steps: []step{
			fail(0, "a", true), fail(0, "b", true), fail(time.Second, "c", true), fail(time.Second, "a", false),
		}, remembered: 3},
		{name: "the same request on another model counts there", limit: 100, steps: []step{
			fail(0, "a", true), {at: 0, model: "tiny", work: "a", want: true}, fail(time.Second, "a", false),
		}, remembered: 2},
		{name: "events of older workers count every time", limit: 100, steps: []step{
			fail(0, "", true), fail(0, "", true), fail(time.Second, "", true),
		}, remembered: 0},
		{name: "successes count, also after the same request failed", limit: 100, steps: []step{
			{at: 0, model: "big", work: "a", ok: true, want: true},
			fail(time.Second, "a", true),
			{at: 2 * time.Second, model: "big", work: "a", ok: true, want: true},
			fail(3*time.Second, "a", false), // a success does not clear it
		}, remembered: 1},
		{name: "a failure counts again a window later", limit: 100, steps: []step{
			fail(0, "a", true), fail(window-time.Nanosecond, "a", false),
			fail(window, "a", true), fail(window+time.Second, "a", false), fail(2*window, "a", true),
		}, remembered: 1},
		{name: "expired requests are forgotten", limit: 100, steps: []step{
			fail(0, "a", true), fail(time.Second, "b", true), fail(window+2*time.Second, "c", true),
		}, remembered: 1},
		{name: "past the cap the oldest is forgotten", limit: 2, steps: []step{
			fail(0, "a", true), fail(time.Second, "b", true), fail(2*time.Second, "c", true),
			fail(3*time.Second, "a", true), // evicted by c: counts again
			fail(4*time.Second, "c", false), fail(5*time.Second, "a", false),
		}, remembered: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
			r := newRepeats(window, tc.limit)
			for i, s := range tc.steps {
				if got := r.counts(s.model, s.work, s.ok, start.Add(s.at)); got != s.want {
					t.Errorf("step %d (%s %q ok=%v at +%v) counts %v, want %v", i, s.model, s.work, s.ok, s.at, got, s.want)
				}
				if n := r.len(); n > tc.limit {
					t.Fatalf("step %d: %d remembered, more than the cap %d", i, n, tc.limit)
				}
			}
			if n := r.len(); n != tc.remembered {
				t.Errorf("%d remembered at the end, want %d", n, tc.remembered)
			}
		})
	}
}

// TestRepeatsBounded: a flood of distinct failing requests keeps the
// state at the cap, and a window later it empties.
func TestRepeatsBounded(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := newRepeats(time.Second, 50)
	for i := range 1000 {
		if !r.counts("big", fmt.Sprint("req-", i), false, start.Add(time.Duration(i)*time.Microsecond)) {
			t.Fatalf("distinct request %d not counted", i)
		}
	}
	if n, o := r.len(), len(r.order); n != 50 || o != 50 {
		t.Errorf("%d remembered, %d in order; want the cap 50", n, o)
	}
	r.counts("big", "late", false, start.Add(2*time.Second))
	if n, o := r.len(), len(r.order); n != 1 || o != 1 {
		t.Errorf("a window later %d remembered, %d in order; want 1", n, o)
	}
}
