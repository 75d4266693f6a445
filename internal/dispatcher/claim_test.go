package dispatcher

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestAnswerAfterLostClaimAck: the dispatcher's claim of an outcome was
// stored but its acknowledgement lost (a JetStream leader change), so the
// request came back. Its redelivery here must still answer the caller, who
// got nothing the first time, with the stored outcome; before, the
// redelivery found "an answer" in herd_results and answered nobody. An
// outcome stored by a run elsewhere still wins over this one: that request
// gets no second answer.
func TestAnswerAfterLostClaimAck(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	d := newDispatcher(t, nc)
	store, err := outcome.NewStore(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	bad := func(id string) *outcome.Outcome {
		return outcome.FromError(id, wire.Errorf(wire.CodeInvalidRequest, "model is required"))
	}
	// lost-ack: stored by this dispatcher, acknowledgement lost.
	tok := d.claims.Token("lost-ack")
	if won, err := store.ClaimResult(t.Context(), bad("lost-ack"), tok); err != nil || !won {
		t.Fatalf("claim: won %v, %v", won, err)
	}
	d.claims.Failed("lost-ack", tok)
	// elsewhere: stored and answered by another dispatcher.
	if won, err := store.ClaimResult(t.Context(), bad("elsewhere"), "another-process"); err != nil || !won {
		t.Fatalf("claim: won %v, %v", won, err)
	}

	anc, ajs := srv.Connect(t)
	inbox := nats.NewInbox()
	sub, err := anc.SubscribeSync(inbox + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := anc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"elsewhere", "lost-ack"} {
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "agent"))
		m.Header.Set(wire.HdrMsgID, id)
		m.Header.Set(wire.HdrReplyTo, inbox+"."+id)
		m.Data = []byte(`{"prompt":"no model named"}`)
		if _, err := ajs.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	// Both come to the dispatcher as redeliveries, as after the lost
	// acknowledgement: taken once and handed back.
	cons, err := ajs.Consumer(t.Context(), wire.StreamReq, wire.ReqConsumerName(wire.Normal))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range b.Messages() {
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("fetched %d requests, want 2", n)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("the request whose claim's acknowledgement was lost got no answer: %v", err)
	}
	if r.Subject != inbox+".lost-ack" || r.Header.Get(wire.HdrStatus) != strconv.Itoa(400) {
		t.Fatalf("answer on %s with status %s, want %s.lost-ack with 400", r.Subject, r.Header.Get(wire.HdrStatus), inbox)
	}
	if !strings.Contains(string(r.Data), "model is required") {
		t.Fatalf("answered %s, want the stored outcome (model is required)", r.Data)
	}
	// Both requests were settled in order ("elsewhere" first): a second
	// answer would be here once the dispatcher has acknowledged both.
	natstest.WaitEmpty(t, ajs, wire.StreamReq, 10*time.Second)
	if extra, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("another answer on %s: the request another run answered was answered again", extra.Subject)
	}
}
