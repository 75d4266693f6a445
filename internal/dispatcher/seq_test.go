package dispatcher

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// firstDelivery is a message JetStream delivers again as a first delivery,
// as after a consumer leader change.
type firstDelivery struct{ jetstream.Msg }

func (m firstDelivery) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := m.Msg.Metadata()
	if err != nil {
		return nil, err
	}
	c := *md
	c.NumDelivered = 1
	return &c, nil
}

// TestRedeliveryVersusResend: the message an outcome settled, delivered
// again as a first delivery (a consumer leader change), gets no second
// answer; the same request sent again (a new message under the same id,
// after JetStream's duplicate window) gets the stored outcome, the same
// bytes, without being settled anew.
func TestRedeliveryVersusResend(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	d := newDispatcher(t, nc)
	natstest.ShortDuplicates(t, js, wire.StreamReq, 100*time.Millisecond)
	inbox := nats.NewInbox()
	var replies atomic.Int32
	var bodies [][]byte
	rs, err := nc.Subscribe(inbox, func(m *nats.Msg) { replies.Add(1); bodies = append(bodies, m.Data) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.Unsubscribe() }()
	natstest.Flush(t, nc)
	publish := func() {
		t.Helper()
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "a"))
		m.Data = []byte(`{"model":`) // invalid: the dispatcher settles it itself
		m.Header.Set(wire.HdrMsgID, "a=twice")
		m.Header.Set(wire.HdrReplyTo, inbox)
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(t.Context(), wire.StreamReq, wire.ReqConsumerName(wire.Normal))
	if err != nil {
		t.Fatal(err)
	}
	take := func() jetstream.Msg {
		t.Helper()
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			return m
		}
		t.Fatal("nothing delivered")
		return nil
	}
	want := func(n int32, what string) {
		t.Helper()
		natstest.Flush(t, nc)
		time.Sleep(100 * time.Millisecond)
		if got := replies.Load(); got != n {
			t.Fatalf("%s: %d replies, want %d", what, got, n)
		}
	}
	publish()
	first := take()
	d.handle(t.Context(), first, wire.Normal)
	want(1, "the request")
	d.handle(t.Context(), firstDelivery{first}, wire.Normal)
	want(1, "its message delivered again as a first delivery")
	time.Sleep(200 * time.Millisecond) // past the duplicate window: the scenario
	publish()
	d.handle(t.Context(), take(), wire.Normal)
	want(2, "the request sent again")
	if string(bodies[0]) != string(bodies[1]) {
		t.Fatalf("the re-sent request got %s, want the stored %s", bodies[1], bodies[0])
	}
}
