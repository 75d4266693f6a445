package optimizer

import (
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/policy"
)

// TestFleetPreloads: a model whose requests come in bursts every minute
// is preloaded on the worker that serves it and does not hold it, once
// per expected burst, shortly before it is due; not on a worker that
// holds it, nor on one whose memory it would fill, nor when its arrivals
// have no rhythm.
func TestFleetPreloads(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Preload = policy.RhythmConfig{IdleGap: 10 * time.Second, MinBursts: 3, Tolerance: 0.2, Lead: 5 * time.Second}
	f := newFleet(cfg)
	t0 := time.Unix(10000, 0)
	// Bursts of "job" at t0, +1m, +2m; "chat" at random times.
	for i := range 3 {
		s := t0.Add(time.Duration(i) * time.Minute)
		for j := range 3 {
			f.observeRequest(events.Request{At: s.Add(time.Duration(j) * time.Second), Model: "job", TotalMs: 0})
		}
	}
	for _, s := range []time.Duration{0, 7 * time.Second, 50 * time.Second, 130 * time.Second} {
		f.observeRequest(events.Request{At: t0.Add(s), Model: "chat"})
	}
	const total = int64(100)
	report := func(now time.Time, id string, used int64, loaded ...string) {
		w := events.Worker{ID: id, At: now, Slots: 2, Models: []string{"job", "chat"}, MemUsedBytes: used, MemTotalBytes: total}
		for _, m := range loaded {
			w.Loaded = append(w.Loaded, events.Loaded{Model: m, SizeBytes: 10})
		}
		f.observeWorker(w)
	}
	due := t0.Add(3 * time.Minute)
	// Early: nothing.
	now := due.Add(-30 * time.Second)
	report(now, "w1", 20, "job") // job's size (10) is learnt here
	report(now, "w2", 20)
	report(now, "w3", 80)
	if got := f.decidePreloads(now); len(got) != 0 {
		t.Fatalf("30s before the burst: %+v", got)
	}
	// Within the lead: w2 loads it; w1 holds it, w3 would pass 85%.
	now = due.Add(-4 * time.Second)
	report(now, "w1", 20, "job")
	report(now, "w2", 20)
	report(now, "w3", 80)
	got := f.decidePreloads(now)
	if len(got) != 1 || got[0].Worker != "w2" || len(got[0].Models) != 1 {
		t.Fatalf("decisions %+v, want one for w2", got)
	}
	p := got[0].Models[0]
	if p.Model != "job" || !p.Due.Equal(due) || p.KeepAlive < 4*time.Second+5*time.Second || p.KeepAlive > 4*time.Second+13*time.Second {
		t.Errorf("preload %+v, want job due at %v kept past it", p, due)
	}
	if !strings.Contains(got[0].Reason, "3 bursts every 1m0s") || got[0].Numbers["period_seconds/job"] != 60 || got[0].Numbers["bursts/job"] != 3 {
		t.Errorf("reason %q numbers %v", got[0].Reason, got[0].Numbers)
	}
	// Once per burst: the next tick (w2 not reporting it loaded yet) does not repeat it.
	now = now.Add(time.Second)
	report(now, "w2", 20)
	if again := f.decidePreloads(now); len(again) != 0 {
		t.Errorf("decided again for the same burst: %+v", again)
	}
	if d := f.decisions().Preloads; len(d) != 1 || d[0].Worker != "w2" {
		t.Errorf("decisions in force %+v", d)
	}
}

func TestPreloadConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil || cfg.preload() != policy.DefaultRhythmConfig() {
		t.Fatalf("the zero value: %v, %+v; want valid, the defaults", err, cfg.preload())
	}
	cfg.Preload = policy.RhythmConfig{IdleGap: time.Second, MinBursts: 1, Tolerance: 0.2, Lead: time.Second}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "min_bursts 1") {
		t.Errorf("min_bursts 1: %v", err)
	}
	cfg.Preload.MinBursts, cfg.Preload.Lead = 3, 0 // off
	if err := cfg.Validate(); err != nil {
		t.Errorf("lead 0: %v", err)
	}
	f := newFleet(cfg)
	if got := f.decidePreloads(time.Now()); got != nil {
		t.Errorf("lead 0 decided %+v", got)
	}
}
