package optimizer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
