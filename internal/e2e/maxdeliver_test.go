package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestCrashLoopDeadLettered: a request whose worker dies on every delivery
// (a poison that crashes the process) is given up by JetStream after
// max_deliver deliveries. herd must not lose it: the max-deliveries
// advisory makes the dispatcher dead-letter it with its reason and answer
// its caller once; the other requests are unaffected.
func TestCrashLoopDeadLettered(t *testing.T) {
	const maxDeliver = 2
	s := newStack(t, stackOpts{
		overrides: provision.Overrides{AckWait: time.Second, MaxDeliver: maxDeliver},
		wcfg:      func(c *worker.Config) { c.DrainTimeout = 10 * time.Millisecond },
	})
	nc, js := s.srv.Connect(t)
	adv, err := nc.SubscribeSync(wire.MaxDeliveriesAdvisory(wire.StreamBatch) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	// The advisory follows deliveries the ledger's connection starts: the
	// subscription must reach the server before them.
	natstest.Flush(t, nc)
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	l.send(wire.Low, "crash", "poison", genBody("tiny", "poison", ""))
	for d := 1; d <= maxDeliver; d++ {
		natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := s.fake.Calls("generate"); n < d {
				return fmt.Errorf("delivery %d not running yet (%d calls)", d, n)
			}
			return nil
		})
		s.mu.Lock()
		w := s.workers[len(s.workers)-1]
		s.mu.Unlock()
		w.kill() // the poison crashes its worker
		wc := worker.DefaultConfig()
		wc.ID = fmt.Sprintf("w-after-crash-%d", d)
		wc.PollInterval = 50 * time.Millisecond
		wc.DrainTimeout = 10 * time.Millisecond
		s.startWorker(wc)
	}
	release()
	l.wait([]string{"poison"}, 20*time.Second)
	m := l.final("poison")
	if eb := errorBody(t, m); status(m) < 500 || eb.Code != wire.CodeInternal {
		t.Fatalf("crash-looping request answered %d %s, want a 5xx internal error", status(m), m.Data)
	}
	am, err := adv.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no max-deliveries advisory: %v", err)
	}
	var a struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if err := json.Unmarshal(am.Data, &a); err != nil || a.Deliveries != maxDeliver {
		t.Fatalf("advisory %s, want deliveries %d", am.Data, maxDeliver)
	}
	dlq, err := js.Stream(t.Context(), wire.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	var dead *jetstream.RawStreamMsg
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		dead, err = dlq.GetLastMsgForSubject(t.Context(), wire.DLQSubject(wire.Low, "crash"))
		return err
	})
	if dead.Header.Get(wire.HdrRequestID) != "poison" || dead.Header.Get(wire.HdrReason) == "" {
		t.Fatalf("dead letter headers %v", dead.Header)
	}
	t.Logf("advisory for HERD_BATCH seq %d after %d deliveries; dead letter reason %q; reply %d %s",
		a.StreamSeq, a.Deliveries, dead.Header.Get(wire.HdrReason), status(m), m.Data)
	batches, err := js.Stream(t.Context(), wire.StreamBatch)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, err := batches.GetMsg(t.Context(), a.StreamSeq); err == nil {
			return fmt.Errorf("the given-up batch is still in HERD_BATCH")
		}
		return nil
	})

	// Nothing else is affected, and no second answer comes.
	l.send(wire.Low, "crash", "after", genBody("tiny", "after the poison", ""))
	l.wait([]string{"after"}, 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if lost, dup := l.counts([]string{"poison", "after"}); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
	if status(l.final("after")) != 200 {
		t.Fatalf("next request answered %d", status(l.final("after")))
	}
}

// TestRequestGivenUpDeadLettered: a request that JetStream delivered
// max_deliver times without any dispatcher settling it (here taken and
// dropped by a consumer that then vanished, as a dispatcher crashing on it
// would) is dead-lettered and answered once by the dispatcher that gets
// the advisory.
func TestRequestGivenUpDeadLettered(t *testing.T) {
	const maxDeliver = 2
	s := newStack(t, stackOpts{overrides: provision.Overrides{AckWait: time.Second, MaxDeliver: maxDeliver}, lateDispatcher: true})
	_, js := s.srv.Connect(t)
	l := s.ledger()
	l.send(wire.High, "crash", "orphan", genBody("tiny", "a request no dispatcher settles", ""))
	cons, err := js.Consumer(t.Context(), wire.StreamReq, wire.ReqConsumerName(wire.High))
	if err != nil {
		t.Fatal(err)
	}
	var last jetstream.Msg
	for d := 1; d <= maxDeliver; d++ {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++ // taken, never acknowledged
			last = m
		}
		if n != 1 {
			t.Fatalf("delivery %d: fetched %d messages", d, n)
		}
	}
	// JetStream gives up when the last delivery's ack wait runs out and
	// says so only in an advisory, which is lost unless the dispatcher
	// listens by then. Starting it was a race with that second on a loaded
	// machine: the delivery is held (in progress) until the dispatcher's
	// subscription is in the server, then left to time out.
	s.startDispatcher()
	advisory := wire.MaxDeliveriesAdvisory(wire.StreamReq) + "." + wire.ReqConsumerName(wire.High)
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if err := last.InProgress(); err != nil {
			return fmt.Errorf("hold the last delivery: %w", err)
		}
		if s.srv.GlobalAccount().Interest(advisory) == 0 {
			return fmt.Errorf("the dispatcher does not listen on %s yet", advisory)
		}
		return nil
	})
	l.wait([]string{"orphan"}, 10*time.Second)
	m := l.final("orphan")
	if eb := errorBody(t, m); status(m) != 500 || eb.Code != wire.CodeInternal {
		t.Fatalf("given-up request answered %d %s, want 500 internal", status(m), m.Data)
	}
	dlq, err := js.Stream(t.Context(), wire.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := dlq.GetLastMsgForSubject(t.Context(), wire.DLQSubject(wire.High, "crash"))
	if err != nil {
		t.Fatal(err)
	}
	if dead.Header.Get(wire.HdrRequestID) != "orphan" || dead.Header.Get(wire.HdrReason) == "" {
		t.Fatalf("dead letter headers %v", dead.Header)
	}
	t.Logf("dead letter reason %q", dead.Header.Get(wire.HdrReason))
	time.Sleep(300 * time.Millisecond)
	if lost, dup := l.counts([]string{"orphan"}); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}
