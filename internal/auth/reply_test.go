package auth_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// TestReplyCannotWriteState: JetStream acknowledges a publish on the
// publisher's reply subject, and a service answers a request on it, with
// the rights of the account they run in, not the caller's; NATS
// permissions cannot restrict reply subjects. An agent that names a KV
// key or another agent's request subject as the reply of its own request
// or ask must not write there: agents are in their own account, their
// reply subjects are mapped by the server, and whatever answers them lands
// back in that account, where there are no streams. The state is checked
// as admin in herd's account.
func TestReplyCannotWriteState(t *testing.T) {
	s := startShipped(t)
	ctx := t.Context()
	admin := login(t, s, auth.Admin)
	kv := func(b string) jetstream.KeyValue {
		k, err := admin.js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	cache, control, results := kv(wire.BucketCache), kv(wire.BucketControl), kv(wire.BucketResults)
	if _, err := results.Put(ctx, "bob=1", []byte("bob's answer")); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Put(ctx, "budget", []byte(`{"budget":1}`)); err != nil {
		t.Fatal(err)
	}
	stored := func(stream string) uint64 {
		t.Helper()
		st, err := admin.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Msgs
	}
	kvStreams := []string{"KV_" + wire.BucketCache, "KV_" + wire.BucketControl, "KV_" + wire.BucketResults}
	before := map[string]uint64{}
	for _, st := range kvStreams {
		before[st] = stored(st)
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		for _, st := range kvStreams {
			if n := stored(st); n != before[st] {
				t.Errorf("%s holds %d messages, held %d", st, n, before[st])
			}
		}
		if e, err := cache.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("herd_cache/k written: %v %v", e, err)
		}
		for _, c := range []struct {
			kv       jetstream.KeyValue
			key, was string
		}{{results, "bob=1", "bob's answer"}, {control, "budget", `{"budget":1}`}} {
			if e, err := c.kv.Get(ctx, c.key); err != nil || string(e.Value()) != c.was || e.Revision() != 1 {
				t.Errorf("%s/%s changed: %v", c.kv.Bucket(), c.key, err)
			}
		}
		st, err := admin.js.Stream(ctx, wire.StreamReq)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := st.GetLastMsgForSubject(ctx, wire.ReqSubject(wire.High, "bob")); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("a request as bob was stored: %v %v", m, err)
		}
	}
	forged := []string{
		"$KV." + wire.BucketCache + ".k",
		"$KV." + wire.BucketResults + ".bob=1",
		"$KV." + wire.BucketControl + ".budget",
		wire.ReqSubject(wire.High, "bob"),
	}
	alice := login(t, s, "alice")

	t.Run("agent's request acknowledged on a forged reply", func(t *testing.T) {
		reqs := stored(wire.StreamReq)
		for _, reply := range forged {
			m := nats.NewMsg(wire.ReqSubject(wire.Normal, "alice"))
			m.Data = []byte(`{"model":"m","prompt":"p"}`)
			m.Reply = reply
			if err := alice.nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		// A request of her own after them: once it is acknowledged, so
		// were they (JetStream stores and acknowledges in order).
		if _, err := alice.js.Publish(ctx, wire.ReqSubject(wire.Normal, "alice"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		// The forged requests themselves were hers to send: stored.
		if n := stored(wire.StreamReq); n != reqs+uint64(len(forged))+1 {
			t.Fatalf("HERD_REQ holds %d messages, want %d", n, reqs+uint64(len(forged))+1)
		}
		if v := alice.violations(); len(v) > 0 {
			t.Fatalf("violations: %v", v)
		}
		// What a stray acknowledgement would do happens after it is sent;
		// give it time before checking that nothing happened.
		time.Sleep(300 * time.Millisecond)
		unchanged(t)
	})
	t.Run("agent's ask answered on a forged reply", func(t *testing.T) {
		// A dispatcher answering the ask door (several messages, as a
		// streamed answer) on the reply subject it received.
		d := login(t, s, auth.Dispatcher)
		answered := make(chan string, len(forged))
		sub, err := d.nc.Subscribe(wire.AskPrefix+".>", func(m *nats.Msg) {
			for range 2 {
				if err := m.Respond([]byte(`{"forged":true}`)); err != nil {
					t.Error(err)
				}
			}
			answered <- m.Reply
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		_ = d.nc.Flush()
		for _, reply := range forged {
			m := nats.NewMsg(wire.AskSubject(wire.Normal, "alice"))
			m.Data = []byte(`{"model":"m","prompt":"p"}`)
			m.Reply = reply
			if err := alice.nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		for range forged {
			select {
			case r := <-answered:
				// The dispatcher sees the server's mapping, not the
				// agent's subject.
				if !strings.HasPrefix(r, strings.TrimSuffix(auth.ServiceReplies, ">")) {
					t.Errorf("the dispatcher got reply subject %q", r)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the ask door got no ask")
			}
		}
		_ = d.nc.Flush()
		if v := d.violations(); len(v) > 0 {
			t.Fatalf("dispatcher violations: %v", v)
		}
		time.Sleep(300 * time.Millisecond)
		unchanged(t)
	})
	t.Run("operator's API call answered on a forged reply", func(t *testing.T) {
		op := login(t, s, auth.Operator)
		for _, reply := range forged {
			m := nats.NewMsg("$JS.API.INFO")
			m.Reply = reply
			if err := op.nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		// Its own call after them is answered.
		if _, err := op.js.AccountInfo(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		unchanged(t)
	})
}

// TestAcrossAccounts: what agents and the operator are allowed still works
// from their own accounts: an agent's request is acknowledged on its
// inbox and a repeated Nats-Msg-Id is reported as a duplicate; every
// message of a streamed ask answer reaches the agent; an answer herd
// publishes later on the agent's inbox in HERD reaches it; a worker's
// presence probes see a connected agent, and a gone one through its inbox
// (never through the mapped reply of an ask); the operator reads streams
// and receives metrics and events.
func TestAcrossAccounts(t *testing.T) {
	s := startShipped(t)
	ctx := t.Context()
	alice := login(t, s, "alice")
	first, err := alice.js.Publish(ctx, wire.ReqSubject(wire.Normal, "alice"), []byte("{}"), jetstream.WithMsgID("alice=once"))
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %v %+v", err, first)
	}
	again, err := alice.js.Publish(ctx, wire.ReqSubject(wire.Normal, "alice"), []byte("{}"), jetstream.WithMsgID("alice=once"))
	if err != nil || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("duplicate publish: %v %+v", err, again)
	}

	d := login(t, s, auth.Dispatcher)
	sub, err := d.nc.Subscribe(wire.AskPrefix+".>", func(m *nats.Msg) {
		for _, part := range []string{"one", "two", "three"} {
			_ = m.Respond([]byte(part))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = d.nc.Flush()
	inbox := auth.AgentInbox("alice") + ".ask.1"
	got, err := alice.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.nc.PublishRequest(wire.AskSubject(wire.High, "alice"), inbox, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one", "two", "three"} {
		m, err := got.NextMsg(10 * time.Second)
		if err != nil || string(m.Data) != want {
			t.Fatalf("streamed answer: %v, want %q", err, want)
		}
	}
	// A queued request's answer: herd publishes on the Herd-Reply-To.
	later, err := alice.nc.SubscribeSync(auth.AgentInbox("alice") + ".later")
	if err != nil {
		t.Fatal(err)
	}
	_ = alice.nc.Flush()
	if err := d.nc.Publish(auth.AgentInbox("alice")+".later", []byte("done")); err != nil {
		t.Fatal(err)
	}
	if m, err := later.NextMsg(10 * time.Second); err != nil || string(m.Data) != "done" {
		t.Fatalf("later answer: %v", err)
	}

	// Presence probes (internal/worker/probe.go) go to the sibling of a
	// reply subject in HERD: the mapped _R_ one of an ask, or the agent's
	// _INBOX one of a queued request.
	w := login(t, s, auth.Worker)
	replies := make(chan string, 1)
	rsub, err := d.nc.Subscribe(wire.AskPrefix+".low.>", func(m *nats.Msg) { replies <- m.Reply })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rsub.Unsubscribe() }()
	_ = d.nc.Flush()
	if err := alice.nc.PublishRequest(wire.AskSubject(wire.Low, "alice"), inbox, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var mapped string
	select {
	case mapped = <-replies:
	case <-time.After(10 * time.Second):
		t.Fatal("no ask")
	}
	// probe reports whether a probe of reply's sibling found interest.
	probe := func(t *testing.T, reply string, n int) bool {
		t.Helper()
		subj, ok := wire.ProbeSubject(reply)
		if !ok {
			t.Fatalf("%s cannot be probed", reply)
		}
		// Each probe its own status subscription: a late status of one
		// cannot be taken for another's.
		m := nats.NewMsg(subj)
		m.Header.Set(wire.HdrProbe, "1")
		m.Reply = "_HERD_GONE.test." + strconv.Itoa(n)
		statuses, err := w.nc.SubscribeSync(m.Reply)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = statuses.Unsubscribe() }()
		if err := w.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		_ = w.nc.Flush()
		_, err = statuses.NextMsg(300 * time.Millisecond)
		if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("probe of %s: %v", reply, err)
		}
		return errors.Is(err, nats.ErrTimeout)
	}
	// A subject nothing listens to is answered: the check can fail.
	if probe(t, "_R_.none.x", 0) {
		t.Fatal("interest in a subject without subscribers")
	}
	// A queued request's reply in the agent's inbox, with a wildcard
	// subscription (the SDK's and nats.go's request inboxes): interest
	// crosses the stream import while the agent is connected.
	wild, err := alice.nc.SubscribeSync(auth.AgentInbox("alice") + ".calls.*")
	if err != nil {
		t.Fatal(err)
	}
	_ = alice.nc.Flush()
	queued := auth.AgentInbox("alice") + ".calls.1"
	if !probe(t, queued, 1) {
		t.Fatal("connected agent's inbox seen gone")
	}
	if !probe(t, mapped, 2) {
		t.Fatal("connected agent's ask seen gone")
	}
	_ = wild.Unsubscribe()
	alice.nc.Close()
	// Gone: the inbox has no interest any more (the call would be
	// canceled, as without access control); the mapped ask reply still
	// has (the account's subscription for mapped replies), so an ask is
	// never canceled by probing, rightly or wrongly.
	try := 10
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		try++
		if probe(t, queued, try) {
			return errors.New("gone agent's inbox still has interest")
		}
		return nil
	})
	if !probe(t, mapped, 3) {
		t.Fatal("mapped ask reply without interest")
	}

	op := login(t, s, auth.Operator)
	metrics, err := op.nc.SubscribeSync(wire.MetricsPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	events, err := op.nc.SubscribeSync(wire.EventsPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	_ = op.nc.Flush()
	_ = w.nc.Publish(wire.MetricsPrefix+".w1", []byte("m"))
	_ = d.nc.Publish(wire.EventsPrefix+".auto.x", []byte("e"))
	for _, sub := range []*nats.Subscription{metrics, events} {
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("operator %s: %v", sub.Subject, err)
		}
	}
	st, err := op.js.Stream(ctx, wire.StreamReq)
	if err != nil || st.CachedInfo().State.Msgs != 1 {
		t.Fatalf("operator reads HERD_REQ: %v", err)
	}
	if m, err := st.GetMsg(ctx, first.Sequence); err != nil || m.Subject != wire.ReqSubject(wire.Normal, "alice") {
		t.Fatalf("operator reads a request: %v", err)
	}
	for _, c := range []*conn{d, w, op} {
		_ = c.nc.Flush()
		if v := c.violations(); len(v) > 0 {
			t.Errorf("%s violations: %v", c.nc.Opts.User, v)
		}
	}
}
