package dispatcher

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestAskOneAnswer: an ask whose store JetStream did not acknowledge (the
// write was stored, its acknowledgement lost) gets one answer, the
// request's outcome, not a 503 first and the outcome later; an ask larger
// than the stream takes is refused 400, not a retryable 503.
func TestAskOneAnswer(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, _ := srv.Connect(t)
	cfg := DefaultConfig()
	cfg.NoWorkerWait = time.Second // no worker: the stored ask ends 404
	d, err := New(t.Context(), cfg, nc, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Bool
	real := d.publishAsk
	d.publishAsk = func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
		ack, err := real(ctx, m)
		if err == nil && lost.CompareAndSwap(false, true) {
			return nil, context.DeadlineExceeded // stored, acknowledgement lost
		}
		return ack, err
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	<-d.Ready()

	anc, _ := srv.Connect(t)
	inbox := nats.NewInbox()
	sub, err := anc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Flush(t, anc)
	m := nats.NewMsg(wire.AskSubject(wire.Normal, "alice"))
	m.Reply = inbox
	m.Data = []byte(`{"model":"tiny","prompt":"an ask whose store was not acknowledged"}`)
	if err := anc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	first, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if st := first.Header.Get(wire.HdrStatus); st != "404" {
		t.Fatalf("first answer %s %s, want the request's outcome (404: no worker)", st, first.Data)
	}
	if extra, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("a second answer: %s %s", extra.Header.Get(wire.HdrStatus), extra.Data)
	}

	big := nats.NewMsg(wire.AskSubject(wire.Normal, "alice"))
	big.Data = []byte(`{"model":"tiny","prompt":"` + strings.Repeat("x", 2<<20) + `"}`)
	r, err := anc.RequestMsg(big, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Header.Get(wire.HdrStatus); st != "400" || !strings.Contains(string(r.Data), "max_body_bytes") {
		t.Fatalf("a 2 MiB ask: %s %s, want 400 naming dispatcher.max_body_bytes", st, r.Data)
	}
}
