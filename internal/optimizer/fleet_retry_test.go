package optimizer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestFleetDecisionWrittenAfterFailedWrite: a fleet decision whose write
// to herd_control failed is written on a later tick, even when nothing
// changed since: the workers read the allocation only from herd_control.
func TestFleetDecisionWrittenAfterFailedWrite(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	s, err := New(t.Context(), testConfig(), nc, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(t.Context(), "KV_"+wire.BucketControl); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.fleet.observeWorker(events.Worker{ID: "w1", At: now, Slots: 4, Models: []string{"a", "b"}})
	s.decideFleet(now)
	if s.Decisions().Budget.Total != 4 {
		t.Fatalf("no budget decided: %+v", s.Decisions().Budget)
	}
	srv.Provision(t, provision.Overrides{})
	s.decideFleet(now.Add(100 * time.Millisecond))
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), control.BudgetKey)
	if err != nil {
		t.Fatalf("the budget decided while herd_control could not be written is still not there: %v", err)
	}
	var b control.Budget
	if err := json.Unmarshal(e.Value(), &b); err != nil || b.Total != 4 {
		t.Fatalf("budget in herd_control %s (%v), want 4 slots", e.Value(), err)
	}
	if _, err := kv.Get(t.Context(), control.InstancesKey); err != nil {
		t.Fatalf("the instances decision is not there either: %v", err)
	}
}

// TestGoneWorkerForgotten: a worker that stopped reporting leaves the
// memory gauge and the unload decisions in force (worker ids are
// <host>-<pid>, new at every start, so keeping them grows without end and
// shows dead workers as live).
func TestGoneWorkerForgotten(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, _ := srv.Connect(t)
	cfg := testConfig()
	cfg.Warmth.MinIdle = time.Millisecond
	reg := prometheus.NewRegistry()
	s, err := New(t.Context(), cfg, nc, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	w := events.Worker{ID: "w1", At: now, Slots: 2, Models: []string{"a", "b"}, MemUsedBytes: 99, MemTotalBytes: 100,
		Loaded: []events.Loaded{{Model: "a", SizeBytes: 40}, {Model: "b", SizeBytes: 40}},
		Load:   map[string]events.ModelLoad{"a": {LastUsed: now.Add(-time.Hour)}, "b": {LastUsed: now.Add(-time.Hour)}}}
	b, _ := json.Marshal(w)
	if err := s.observe(events.WorkerSubjects+"w1", b); err != nil {
		t.Fatal(err)
	}
	s.decideFleet(now)
	if n := testutil.CollectAndCount(s.m.memoryUse); n != 1 {
		t.Fatalf("%d memory series, want w1's", n)
	}
	if len(s.Decisions().Unloads) != 1 {
		t.Fatalf("unloads %+v, want one for w1 (99%% memory, idle models)", s.Decisions().Unloads)
	}
	s.decideFleet(now.Add(cfg.WorkerTimeout + time.Second))
	if n := testutil.CollectAndCount(s.m.memoryUse); n != 0 {
		t.Errorf("%d memory series after w1 went away, want none", n)
	}
	if u := s.Decisions().Unloads; len(u) != 0 {
		t.Errorf("unloads in force after w1 went away: %+v", u)
	}
}
