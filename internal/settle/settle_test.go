package settle

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/wire"
)

// newSettler returns a Settler on a server whose herd_results bucket
// holds resultsBytes at most.
func newSettler(t *testing.T, resultsBytes int64) (*Settler, *nats.Conn) {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx := t.Context()
	for _, c := range []jetstream.KeyValueConfig{{Bucket: wire.BucketResults, MaxBytes: resultsBytes}, {Bucket: wire.BucketCache}} {
		if _, err := js.CreateKeyValue(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: wire.StreamDLQ, Subjects: []string{wire.DLQPrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	store, err := outcome.NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewPublisher(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return New(nc, js, store, ev, zaptest.NewLogger(t), outcome.NewClaims(time.Minute, 10), 0), nc
}

func expectReply(t *testing.T, nc *nats.Conn) (string, func() *nats.Msg) {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Flush(t, nc)
	return inbox, func() *nats.Msg {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		return m
	}
}

// TestResultsFullStillAnswers: when herd_results is full (discard new),
// an outcome that cannot be stored is still sent, not retried until the
// request is given up: herd degrades to no recovery by id, which the hook
// reports (an alert), instead of answering 500 after running.
func TestResultsFullStillAnswers(t *testing.T) {
	s, nc := newSettler(t, 300)
	full := 0
	s.OnResultsFull = func() { full++ }
	for i, id := range []string{"r1", "r2", "r3"} {
		inbox, next := expectReply(t, nc)
		o := &outcome.Outcome{RequestID: id, Status: 200, Body: []byte(`{"response":"` + strings.Repeat("x", 100) + `"}`)}
		won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: id, Agent: "a", Reply: inbox}, Outcome: o})
		if err != nil || !won {
			t.Fatalf("%s: won %v, %v; want the answer sent though the store is full", id, won, err)
		}
		if m := next(); m.Header.Get(wire.HdrStatus) != "200" {
			t.Fatalf("%s answered %q", id, m.Header.Get(wire.HdrStatus))
		}
		_ = i
	}
	if full == 0 {
		t.Fatal("a full herd_results was not reported")
	}
}

// TestOutcomeTooLarge: an answer larger than NATS can carry is stored and
// sent as a 400 naming the limit, once, instead of failing its claim on
// every delivery.
func TestOutcomeTooLarge(t *testing.T) {
	s, nc := newSettler(t, -1)
	inbox, next := expectReply(t, nc)
	big := make([]byte, nc.MaxPayload()+1)
	for i := range big {
		big[i] = 'x'
	}
	o := &outcome.Outcome{RequestID: "huge", Status: 200, Body: []byte(`"` + string(big) + `"`)}
	won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: "huge", Agent: "a", Reply: inbox}, Outcome: o})
	if err != nil || !won {
		t.Fatalf("won %v, %v", won, err)
	}
	m := next()
	if m.Header.Get(wire.HdrStatus) != "400" || !strings.Contains(string(m.Data), "max_payload") {
		t.Fatalf("answer %q %.200s, want 400 naming max_payload", m.Header.Get(wire.HdrStatus), m.Data)
	}
}

// TestResendWhileRunning: a request sent again under its id (a new
// message, after JetStream's duplicate window) while its first copy was
// still running gets the first copy's outcome on its own reply subject
// when its own run loses the claim; another delivery of the message that
// was settled gets nothing more.
func TestResendWhileRunning(t *testing.T) {
	s, nc := newSettler(t, -1)
	first, next1 := expectReply(t, nc)
	o := &outcome.Outcome{RequestID: "a=job", Status: 200, Body: []byte(`{"response":"first run"}`)}
	if won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: "a=job", Agent: "a", Reply: first, Seq: 7}, Outcome: o}); err != nil || !won {
		t.Fatalf("first copy: won %v, %v", won, err)
	}
	next1()
	again, next2 := expectReply(t, nc)
	o2 := &outcome.Outcome{RequestID: "a=job", Status: 200, Body: []byte(`{"response":"second run"}`)}
	if won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: "a=job", Agent: "a", Reply: again, Seq: 9}, Outcome: o2}); err != nil || won {
		t.Fatalf("the copy sent again: won %v, %v; want the first outcome to stand", won, err)
	}
	if m := next2(); string(m.Data) != `{"response":"first run"}` {
		t.Fatalf("the copy sent again got %s, want the stored outcome", m.Data)
	}
	// The settled message delivered again: no second answer.
	redo := nats.NewInbox()
	sub, err := nc.SubscribeSync(redo)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Flush(t, nc)
	if won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: "a=job", Agent: "a", Reply: redo, Seq: 7}, Outcome: o2}); err != nil || won {
		t.Fatalf("redelivery: won %v, %v", won, err)
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("the settled message delivered again was answered again: %s", m.Data)
	}
}

// TestSameIDAnotherAgent: two agents used the same unscoped id; the one
// whose claim lost still gets an answer, its own, and never the other's.
func TestSameIDAnotherAgent(t *testing.T) {
	s, nc := newSettler(t, -1)
	bInbox, nextB := expectReply(t, nc)
	ob := &outcome.Outcome{RequestID: "job-1", Status: 200, Body: []byte(`{"response":"b's"}`)}
	if won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: "job-1", Agent: "b", Reply: bInbox, Seq: 5}, Outcome: ob}); err != nil || !won {
		t.Fatalf("b: won %v, %v", won, err)
	}
	nextB()
	aInbox, nextA := expectReply(t, nc)
	oa := &outcome.Outcome{RequestID: "job-1", Status: 200, Body: []byte(`{"response":"a's"}`)}
	if won, err := s.Settle(context.Background(), Final{Item: job.Item{ID: "job-1", Agent: "a", Reply: aInbox, Seq: 3}, Outcome: oa}); err != nil || won {
		t.Fatalf("a: won %v, %v; want b's outcome stored", won, err)
	}
	if m := nextA(); string(m.Data) != `{"response":"a's"}` {
		t.Fatalf("a got %s, want its own answer", m.Data)
	}
}
