package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestLastDeliveryFailureAnsweredElsewhere: a request whose Ollama calls
// fail on its last delivery is dead-lettered with its error reply, unless
// another run of it (a copy JetStream redelivered in a consumer leader
// change) already stored its outcome: then it was answered there, and a
// dead letter here would be a second final outcome.
func TestLastDeliveryFailureAnsweredElsewhere(t *testing.T) {
	s := newStack(t, stackOpts{overrides: provision.Overrides{MaxDeliver: 1}})
	_, js := s.srv.Connect(t)
	store, err := outcome.NewStore(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	s.fake.SetFailure("tiny", 503, "")
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	l.send(wire.Low, "lastdel", "elsewhere", genBody("tiny", "answered elsewhere", ""))
	waitBatched(t, s)
	// The other run's answer, stored while this run's call is held.
	won, err := store.ClaimResult(t.Context(), &outcome.Outcome{RequestID: "elsewhere", Status: 200, Body: []byte(`{"response":"from the other run"}`), Agent: "lastdel"}, "other-run")
	if err != nil || !won {
		t.Fatalf("claim: %v %v", won, err)
	}
	release()
	batches, err := js.Stream(t.Context(), wire.StreamBatch)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := s.fake.Calls("generate"); n < 1 {
			return fmt.Errorf("no generate call yet")
		}
		info, err := batches.Info(t.Context())
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d batches not settled", info.State.Msgs)
		}
		return nil
	})
	dlq, err := js.Stream(t.Context(), wire.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := dlq.GetLastMsgForSubject(t.Context(), wire.DLQSubject(wire.Low, "lastdel"))
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("a request answered by another run was dead-lettered too (%v): reason %q", err, dead.Header.Get(wire.HdrReason))
	}
	if m := l.final("elsewhere"); m != nil {
		t.Fatalf("answered here too: %d %s", status(m), m.Data)
	}
	o, err := store.Result(t.Context(), "elsewhere")
	if err != nil || o == nil || o.Status != 200 {
		t.Fatalf("stored outcome %+v (%v), want the other run's", o, err)
	}

	// A request nobody else answered: dead-lettered and answered 503.
	l.send(wire.Low, "lastdel", "failing", genBody("tiny", "fails here", ""))
	l.wait([]string{"failing"}, 20*time.Second)
	m := l.final("failing")
	if eb := errorBody(t, m); status(m) != 503 || eb.Code != wire.CodeBackendUnavailable {
		t.Fatalf("failing request answered %d %s, want 503 backend_unavailable", status(m), m.Data)
	}
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		dead, err = dlq.GetLastMsgForSubject(t.Context(), wire.DLQSubject(wire.Low, "lastdel"))
		if err != nil {
			return err
		}
		if id := dead.Header.Get(wire.HdrRequestID); id != "failing" {
			return fmt.Errorf("last dead letter is %q", id)
		}
		return nil
	})
	if lost, dup := l.counts([]string{"failing"}); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}
