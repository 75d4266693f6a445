package optimizer

import (
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/modelbench"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/provision"
)

// TestBenchChangesSameProfile: a model's latest run is compared with the
// previous run of its own profile, never with a run of another profile,
// and with that one even when a run of another profile came between.
func TestBenchChangesSameProfile(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	_, js := srv.Connect(t)
	st, err := modelbench.OpenStore(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	for i, r := range []struct {
		model, profile string
		p95            float64
	}{
		// a: two quick runs, then its first long run (nothing to compare).
		{"a", "quick", 100}, {"a", "quick", 100}, {"a", "long", 400},
		// b: a long run, a quick one, then a long one (compare with the first).
		{"b", "long", 100}, {"b", "quick", 300}, {"b", "long", 200},
	} {
		x := &modelbench.Result{ID: r.model + string(rune('0'+i)), Time: start.Add(time.Duration(i) * time.Minute), Model: r.model, Profile: r.profile,
			Requests: 1, Concurrency: 1, Figures: modelbench.Figures{OK: 1, Latency: modelbench.Latency{P50: 10, P95: r.p95}}}
		if err := st.Save(t.Context(), x); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := ReadBenchReport(t.Context(), js, policy.AutoConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]BenchRow{}
	for _, r := range rep.Rows {
		rows[r.Model] = r
	}
	if a := rows["a"]; a.Profile != "long" || len(a.Changes) != 0 {
		t.Errorf("a's first long run: changes %q, want none (its earlier runs are quick)", a.Changes)
	}
	if b := rows["b"]; b.Profile != "long" || !strings.Contains(strings.Join(b.Changes, " "), "p95 +100%") {
		t.Errorf("b's second long run: changes %q, want p95 +100%% against its first long run", b.Changes)
	}
}
