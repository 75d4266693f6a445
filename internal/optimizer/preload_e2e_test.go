package optimizer

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/worker"
)

// TestPreloadByRhythmEndToEnd: on a real Ollama, herd-tiny gets a burst
// of requests every 5 s and is kept loaded 1 s after a call, so it is
// unloaded between bursts and each burst's first request waits for a
// load (load_duration of a few hundred ms) — until the optimizer has seen
// 3 bursts: then it writes a preload decision to herd_control
// (preload.<worker>, with the period and the due time), announces it on
// herd.events.preload.herd-tiny and counts it, the worker loads the model
// shortly before the next burst, and that burst's first request finds it
// loaded (load_duration near zero).
func TestPreloadByRhythmEndToEnd(t *testing.T) {
	const period = 5 * time.Second
	ocfg := testConfig()
	ocfg.Tick = 100 * time.Millisecond
	ocfg.WorkerTimeout = 5 * time.Second
	ocfg.Warmth.MinGaps = 1000 // keep_alive stays the worker's 1s
	ocfg.Preload = policy.RhythmConfig{IdleGap: 2 * time.Second, MinBursts: 3, Tolerance: 0.25, Lead: 1500 * time.Millisecond}
	const total = int64(1 << 30)
	s := startRealStack(t, 2, ocfg, func(c *worker.Config) {
		c.Slots, c.CPUBudget = 2, 1
		c.Warm = nil
		c.KeepAlive = map[string]time.Duration{tiny: time.Second, slow: time.Second}
		c.Memory = func() (int64, int64, error) { return total / 10, total, nil }
	})
	// burst sends 2 requests and returns the first one's load_duration.
	n := 0
	burst := func() time.Duration {
		var first time.Duration
		for i := range 2 {
			n++
			resp, _, err := s.c.Generate(t.Context(), &api.GenerateRequest{Model: tiny, Prompt: fmt.Sprintf("job %d", n),
				Options: map[string]any{"num_predict": 2}})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = resp.LoadDuration
			}
		}
		return first
	}
	// unloaded waits until Ollama no longer holds herd-tiny.
	unloaded := func() {
		natstest.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
			ps, err := s.ollama.ListRunning(t.Context())
			if err != nil {
				return err
			}
			for _, m := range ps.Models {
				if m.Name == tiny+":latest" {
					return fmt.Errorf("%s still loaded", tiny)
				}
			}
			return nil
		})
	}
	start := time.Now()
	var loads []time.Duration
	for i := range 4 {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			time.Sleep(d) // the synthetic job's schedule, not a wait for herd
		}
		if i > 0 {
			// Between bursts the model was unloaded (keep_alive 1s)...
			if i < 3 {
				unloaded()
			}
		}
		loads = append(loads, burst())
		t.Logf("burst %d at +%v: first request load_duration %v", i+1, time.Since(start).Round(time.Millisecond), loads[i].Round(time.Millisecond))
	}
	// Bursts 2 and 3 came after an idle gap with no rhythm known yet: a load.
	for _, i := range []int{1, 2} {
		if loads[i] < 50*time.Millisecond {
			t.Errorf("burst %d: load_duration %v, want a load (the model was unloaded)", i+1, loads[i])
		}
	}
	// Burst 4 was due: the model was preloaded.
	if loads[3] > 20*time.Millisecond || loads[3]*5 > loads[2] {
		t.Errorf("burst 4: load_duration %v (burst 3: %v), want near zero: preloaded", loads[3], loads[2])
	}
	e, err := s.kv.Get(t.Context(), control.PreloadKey("w1"))
	if err != nil {
		t.Fatalf("no preload decision: %v", err)
	}
	var p control.Preload
	if err := json.Unmarshal(e.Value(), &p); err != nil || len(p.Models) != 1 || p.Models[0].Model != tiny || p.Reason == "" {
		t.Fatalf("preload decision %s (%v)", e.Value(), err)
	}
	if per := p.Numbers["period_seconds/"+tiny]; per < 4.5 || per > 5.5 {
		t.Errorf("period %v s, want about 5", per)
	}
	t.Logf("decision: %s (due %v after the first burst, keep_alive %v)", p.Reason, p.Models[0].Due.Sub(start).Round(time.Millisecond), p.Models[0].KeepAlive)
	s.events.wait(t, EventSubject(policy.KindPreload, tiny))
	if got := decisionCount(t, s, string(policy.KindPreload)); got < 1 {
		t.Errorf("herd_optimizer_decisions_total{kind=preload} = %v", got)
	}
}

// decisionCount returns herd_optimizer_decisions_total summed over kind's
// series.
func decisionCount(t *testing.T, s *realStack, kind string) float64 {
	t.Helper()
	mfs, err := s.oreg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "herd_optimizer_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
