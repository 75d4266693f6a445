package dispatcher

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestReadyMeansListening: the moment Ready is closed an ask sent on
// another connection is answered (herd up prints "ready" on it, and a
// client that asks at once must not find no responders). Each round is a
// new dispatcher on a new server.
func TestReadyMeansListening(t *testing.T) {
	for i := range 10 {
		// A server of its own each round: the last round's closed
		// connection may still hold its queue subscription or pull on the
		// same server, and take the ask.
		srv := natstest.Start(t)
		srv.Provision(t, provision.Overrides{})
		anc, _ := srv.Connect(t)
		nc, _ := srv.Connect(t)
		d := newDispatcher(t, nc)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		select {
		case <-d.Ready():
		case err := <-done:
			t.Fatalf("round %d: Run ended before it was ready: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: not ready after 10s", i)
		}
		m := nats.NewMsg(wire.AskSubject(wire.Normal, "agent"))
		m.Data = []byte(`{"prompt":"no model named"}`)
		rctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		r, err := anc.RequestMsgWithContext(rctx, m)
		cancel()
		if errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("round %d: an ask sent once the dispatcher was ready found no responders", i)
		}
		if err != nil {
			t.Fatalf("round %d: ask: %v", i, err)
		}
		if st := r.Header.Get(wire.HdrStatus); st != "400" {
			t.Fatalf("round %d: ask answered status %q, want 400 for a request without a model", i, st)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("round %d: Run: %v", i, err)
		}
		nc.Close()
	}
}
