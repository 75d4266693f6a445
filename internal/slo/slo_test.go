package slo

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

func TestTargets(t *testing.T) {
	c := Default()
	c.Low = Target{P95: 30 * time.Second, P99: time.Minute, ErrorRate: 0.01}
	c.Profiles = []Profile{{Name: "batch", Agents: []string{"batch-*"}, Target: Target{P95: 10 * time.Second}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.For(wire.High); got != Seed {
		t.Errorf("high %+v, want the seed's %+v", got, Seed)
	}
	got, name := c.ForAgent(wire.Low, "batch-7")
	if want := (Target{P95: 10 * time.Second, P99: time.Minute, ErrorRate: 0.01}); got != want || name != "batch" {
		t.Errorf("batch-7 at low: %+v (%q), want %+v (batch)", got, name, want)
	}
	if got, name := c.ForAgent(wire.Normal, "planner"); got != Seed || name != "" {
		t.Errorf("planner: %+v (%q), want the seed's", got, name)
	}
	misses := Seed.Misses(Measured{Count: 10, P95: 3 * time.Second, P99: 4 * time.Second, ErrorRate: 0.01})
	if want := []string{"p95 3s above 2s", "errors 1% above 0.1%"}; !slices.Equal(misses, want) {
		t.Errorf("misses %q, want %q", misses, want)
	}
	if m := Seed.Misses(Measured{}); m != nil {
		t.Errorf("nothing measured missed %q", m)
	}
	bad := Default()
	bad.High.P99 = time.Second
	bad.Profiles = []Profile{{Name: "x"}}
	if err := bad.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Validate() = %v, want ErrInvalidConfig", err)
	}
	for s, want := range map[int]bool{200: false, 400: false, 404: false, 499: false, 429: true, 500: true, 503: true, 504: true} {
		if IsError(s) != want {
			t.Errorf("IsError(%d) = %v", s, !want)
		}
	}
}
