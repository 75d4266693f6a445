package optimizer

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

func TestDemand(t *testing.T) {
	now := time.Unix(1000, 0)
	ws := []events.Worker{
		{ID: "w1", At: now.Add(-100 * time.Millisecond), Models: []string{"a", "b"}, Load: map[string]events.ModelLoad{
			"a": {Busy: 1, Waiting: 2, OldestWaitMs: 300}, "b": {Busy: 1}}},
		{ID: "w2", At: now, Models: []string{"a"}, Load: map[string]events.ModelLoad{"a": {Busy: 2, Waiting: 1, OldestWaitMs: 100}}},
	}
	d := Demand(ws, nil, now)
	want := map[string]policy.Demand{
		"a": {QueueDepth: 3, QueueAge: 400 * time.Millisecond, BusySlots: 3},
		"b": {BusySlots: 1},
	}
	for m, w := range want {
		if d[m] != w {
			t.Errorf("%s: %+v, want %+v", m, d[m], w)
		}
	}
}

// TestFleetDecisions: the allocation starts even, follows a queue after
// persist evaluations and comes back; keep_alive follows the gaps (and
// priority models stay loaded); under memory pressure the idle
// non-priority model is unloaded once per report.
func TestFleetDecisions(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Budget = policy.BudgetConfig{Persist: 2, Hold: time.Second, MaxMoves: 1, MinSlots: 0, Models: []policy.ModelSlots{{Name: "p", MinSlots: 1}}}
	cfg.Warmth.MinGaps, cfg.Warmth.MinIdle = 3, time.Second
	cfg.PriorityModels = []string{"p"}
	f := newFleet(cfg)
	now := time.Unix(1000, 0)
	report := func(load map[string]events.ModelLoad) {
		f.observeWorker(events.Worker{ID: "w1", At: now, Slots: 4, Models: []string{"a", "b", "p"}, Load: load,
			MemUsedBytes: 9, MemTotalBytes: 10,
			Loaded: []events.Loaded{{Model: "b", SizeBytes: 2}, {Model: "p", SizeBytes: 2}}})
	}
	step := func() (map[string]int, bool) {
		now = now.Add(100 * time.Millisecond)
		b, _ := f.decideBudget(now, nil, nil, nil)
		if b == nil {
			return f.decisions().Budget.Slots, false
		}
		return b.Slots, true
	}

	report(nil)
	if got, ok := step(); !ok || got["a"]+got["b"]+got["p"] != 4 || got["a"] < 1 || got["b"] < 1 || got["p"] < 1 {
		t.Fatalf("first allocation %v (%v), want 4 slots, at least 1 each", got, ok)
	}
	before := f.decisions().Budget.Slots["a"]
	burst := map[string]events.ModelLoad{"a": {Busy: before, Waiting: 6, OldestWaitMs: 1000}}
	report(burst)
	if _, ok := step(); ok {
		t.Fatal("a slot moved after one evaluation; persist is 2")
	}
	if _, ok := step(); ok {
		t.Fatal("a slot moved without a new report: persist counts reports, not ticks")
	}
	report(burst)
	got, ok := step()
	if !ok || got["a"] != before+1 {
		t.Fatalf("after 2 evaluations %v (%v), want a at %d", got, ok, before+1)
	}
	// The burst ends: the slot goes back after the hold.
	for range 30 {
		report(nil)
		if got, _ = step(); got["a"] == before {
			break
		}
	}
	if got["a"] != before {
		t.Fatalf("after the burst %v, want a back at %d", got, before)
	}

	// keep_alive: 4 arrivals 10 minutes apart -> p95 10m x 2 = 20m.
	for i := range 4 {
		f.observeRequest(events.Request{Model: "a", At: now.Add(time.Duration(i-4) * 10 * time.Minute)})
	}
	ka := f.decideKeepAlive(now)
	byModel := map[string]time.Duration{}
	for _, k := range ka {
		byModel[k.Model] = k.KeepAlive
	}
	if byModel["a"] != 20*time.Minute || byModel["p"] != cfg.Warmth.PriorityKeepAlive || len(ka) != 2 {
		t.Fatalf("keep_alive decisions %+v, want a 20m and p %v", ka, cfg.Warmth.PriorityKeepAlive)
	}
	if again := f.decideKeepAlive(now); len(again) != 0 {
		t.Fatalf("unchanged keep_alive decided again: %+v", again)
	}

	// Memory at 90%: b (loaded, idle) is unloaded; p is a priority model.
	now = now.Add(time.Minute)
	report(nil)
	u := f.decideUnloads(now)
	if len(u) != 1 || !slices.Equal(u[0].Models, []string{"b"}) || u[0].Worker != "w1" {
		t.Fatalf("unload decisions %+v, want b on w1", u)
	}
	if again := f.decideUnloads(now.Add(time.Millisecond)); len(again) != 0 {
		t.Fatalf("decided again without a new report: %+v", again)
	}
	// A new report that still shows b loaded (being unloaded): b is not
	// named again, and its memory counts as freed.
	now = now.Add(time.Second)
	report(nil)
	if again := f.decideUnloads(now); len(again) != 0 {
		t.Fatalf("decided again while b is being unloaded: %+v", again)
	}
}

// TestBacklogs: batches no worker took yet count as the model's queue,
// with the age of the oldest.
func TestBacklogs(t *testing.T) {
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	s := startService(t, nc, testConfig(), prometheus.NewRegistry())
	for _, p := range []wire.Priority{wire.High, wire.Low} {
		if _, err := js.CreateOrUpdateConsumer(t.Context(), wire.StreamBatch, defs.BatchConsumer("m", p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []wire.Priority{wire.High, wire.Low, wire.Low} {
		if _, err := js.Publish(t.Context(), wire.BatchSubject("m", p), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Second)
	// The server counts a consumer's pending messages in a goroutine after
	// the publish is acknowledged (a CI run read 0 at once): poll.
	var b map[string]backlog
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		b = s.backlogs([]string{"m", "none"}, later)
		if got := b["m"]; got.batches != 3 || got.oldest < time.Second || got.oldest > 5*time.Second {
			return fmt.Errorf("backlog of m %+v, want 3 batches, the oldest about 1s old", got)
		}
		return nil
	})
	if _, ok := b["none"]; ok {
		t.Fatal("a model without consumers has a backlog")
	}
	d := map[string]policy.Demand{"m": {QueueDepth: 1, BusySlots: 2}}
	withBacklog(d, b)
	if d["m"].QueueDepth != 4 || d["m"].QueueAge != b["m"].oldest || d["m"].BusySlots != 2 {
		t.Fatalf("demand with backlog %+v", d["m"])
	}
}
