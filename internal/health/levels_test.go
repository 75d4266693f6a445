package health

import (
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/slo"
)

// TestServiceLevels: herd health judges each priority's last window
// against the service-level targets in force, not thresholds of its own.
func TestServiceLevels(t *testing.T) {
	s := &Snapshot{At: time.Now(), URL: "nats://x", LevelsWindow: 5 * time.Minute, Levels: []ServiceLevel{
		{Priority: "high", Count: 100, P95: 1500 * time.Millisecond, P99: 3 * time.Second, Target: slo.Seed},
		{Priority: "normal", Count: 100, P95: 3 * time.Second, P99: 4 * time.Second, ErrorRate: 0.02, Target: slo.Seed},
		{Priority: "low", Target: slo.Seed},
	}}
	r := Evaluate(s, DefaultThresholds())
	got := map[string]Check{}
	for _, c := range r.Checks {
		got[c.Name] = c
	}
	if c := got["slo high"]; c.Status != OK {
		t.Errorf("slo high: %+v, want ok", c)
	}
	if c := got["slo normal"]; c.Status != Degraded || !strings.Contains(c.Detail, "p95 3s above 2s") || !strings.Contains(c.Detail, "errors 2% above 0.1%") {
		t.Errorf("slo normal: %+v, want degraded naming p95 and errors", c)
	}
	if c := got["slo low"]; c.Status != OK || !strings.Contains(c.Detail, "no requests") {
		t.Errorf("slo low: %+v, want ok with no requests", c)
	}
	if r.Status != Degraded {
		t.Errorf("report %v, want degraded", r.Status)
	}
}
