package dispatcher

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestGiveUpAnswersOnceWhileWorkerFinishes: JetStream gives a batch up
// (max-deliveries advisory) while the worker of its last delivery is still
// running it, as when in-progress acks were lost in a consumer leader
// change. That worker then claims the request's outcome (first stored
// wins) and answers when it wins. The dispatcher's give-up must follow the
// same rule: here the worker claims the outcome as soon as the dead letter
// is published, and between them the request must be answered exactly once
// (the dead letter and error reply of the give-up, or the worker's answer).
func TestGiveUpAnswersOnceWhileWorkerFinishes(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{AckWait: 30 * time.Second})
	nc, _ := srv.Connect(t)
	d := newDispatcher(t, nc)
	wnc, wjs := srv.Connect(t) // the worker's connection
	store, err := outcome.NewStore(t.Context(), wjs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		id := fmt.Sprintf("late-%d", i)
		agent := fmt.Sprintf("agent%d", i)
		inbox := nats.NewInbox()
		var replies atomic.Int32
		rs, err := wnc.Subscribe(inbox, func(*nats.Msg) { replies.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		// The worker finishes the request the moment the dead letter is
		// published: it claims the outcome and answers when it wins.
		var workerWon atomic.Int32
		claimed := make(chan struct{})
		ds, err := wnc.Subscribe(wire.DLQSubject(wire.Low, agent), func(*nats.Msg) {
			defer close(claimed)
			o := &outcome.Outcome{RequestID: id, Status: 200, Body: []byte(`{"response":"late"}`)}
			won, err := store.ClaimResult(t.Context(), o, "worker-claim")
			if err != nil {
				t.Error(err)
				return
			}
			if won {
				workerWon.Add(1)
				_ = wnc.PublishMsg(o.Msg(inbox))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		// Both subscriptions reach the server before the give-up publishes
		// on another connection (under load they did not: no dead letter
		// and no answer were seen).
		if err := wnc.Flush(); err != nil {
			t.Fatal(err)
		}
		it := job.Item{ID: id, Priority: wire.Low, Agent: agent, Reply: inbox, Body: []byte(`{"model":"tiny","prompt":"x"}`)}
		d.giveUp(t.Context(), it, "test: given up")
		select {
		case <-claimed:
		case <-time.After(10 * time.Second):
			// No dead letter: the give-up lost to nobody, which is not this case.
		}
		if err := wnc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if replies.Load() == 0 {
				return fmt.Errorf("%s: no answer", id)
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond) // a second answer would be here by now
		if n := replies.Load(); n != 1 {
			t.Errorf("%s answered %d times (worker won its claim: %v), want once", id, n, workerWon.Load() == 1)
		}
		o, err := store.Result(t.Context(), id)
		if err != nil || o == nil {
			t.Fatalf("%s: no stored outcome (%v)", id, err)
		}
		if workerWon.Load() == 1 && o.Status != 200 {
			t.Errorf("%s: the worker's claimed outcome was overwritten by the give-up's %d", id, o.Status)
		}
		_ = rs.Unsubscribe()
		_ = ds.Unsubscribe()
	}
}

// newDispatcher returns a dispatcher with the default configuration on nc,
// logging errors only.
func newDispatcher(t *testing.T, nc *nats.Conn) *Dispatcher {
	t.Helper()
	d, err := New(t.Context(), DefaultConfig(), nc, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return d
}
