package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestAnsweredOnceWhenRunTwice is the duplicate TestClusterFailover found,
// on one server: when a consumer's leader changes, JetStream delivers a
// request in flight again as a first delivery, so it reaches a worker in
// a second batch after it was answered. The worker runs it again (work
// may repeat) but the caller gets one reply: the first stored outcome.
func TestAnsweredOnceWhenRunTwice(t *testing.T) {
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{})
	fake := ollamatest.New(t, ollamatest.WithModels(model))
	nc, js := srv.Connect(t)

	wnc, _ := srv.Connect(t)
	oc, err := ollama.NewClient(fake.URL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval = "w1", 50*time.Millisecond
	w, err := worker.New(t.Context(), wc, wnc, oc, defs, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, w.Run)

	inbox, replies := countReplies(t, nc)
	it := job.Item{ID: "twice", Reply: inbox, Agent: "a", Priority: wire.Normal, Op: request.OpGenerate, Model: model,
		Body: json.RawMessage(`{"model":"tiny","prompt":"once"}`), Received: time.Now()}
	publish := func(id string) {
		t.Helper()
		b, _ := json.Marshal(job.Batch{ID: id, Model: model, Priority: wire.Normal, Created: time.Now(), Items: []job.Item{it}})
		if _, err := js.Publish(t.Context(), wire.BatchSubject(model, wire.Normal), b); err != nil {
			t.Fatal(err)
		}
	}
	ran := func(n int) func() error {
		return func() error {
			if got := fake.Calls("generate"); got < n {
				return fmt.Errorf("%d ollama calls, want %d", got, n)
			}
			if got := replies.Load(); got < 1 {
				return fmt.Errorf("no reply yet")
			}
			return nil
		}
	}
	publish("first")
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, ran(1))
	publish("second") // the same request, not marked as redelivered
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, ran(2))
	// Both batches are acknowledged once their outcomes are settled.
	natstest.WaitEmpty(t, js, wire.StreamBatch, 20*time.Second)
	replies.wantOne(t, "a request run twice")
}

// TestReplyLostInReconnect: a reply sent while the agent's connection
// reconnects to another server is lost (core NATS keeps none). The SDK
// finds the answer in herd_results once its connection is back, instead
// of waiting for its deadline (forever when it has none).
func TestReplyLostInReconnect(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	_, js := srv.Connect(t)
	anc, err := nats.Connect(srv.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	c, err := client.New(anc, client.WithAgent("lost"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	// Play herd: take the request, lose its reply in a reconnect, store
	// its outcome.
	go storeFound(t, js, func() {
		_ = anc.ForceReconnect()
		for anc.Stats().Reconnects == 0 || !anc.IsConnected() {
			time.Sleep(10 * time.Millisecond)
		}
	})
	askFound(t, c, 15*time.Second)
}

// TestDispatcherAnswersOnce: the dispatcher's own answers (errors, cache
// hits, coalesced followers) go out once per request message, however
// often JetStream delivers it (dispatcher.TestRedeliveryVersusResend
// covers a consumer leader change's first-delivery redelivery). A second
// copy stored after HERD_REQ's duplicate window is the request sent
// again, under its id: it gets the stored outcome, the same bytes, and
// nothing is settled twice.
func TestDispatcherAnswersOnce(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	d, err := dispatcher.New(t.Context(), dispatcher.DefaultConfig(), nc, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, d.Run)

	s := natstest.ShortDuplicates(t, js, wire.StreamReq, 100*time.Millisecond)
	inbox := nats.NewInbox()
	got := make(chan *nats.Msg, 8)
	sub, err := nc.Subscribe(inbox, func(m *nats.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	natstest.Flush(t, nc)
	publish := func() {
		t.Helper()
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "a"))
		m.Data = []byte(`{"model":`) // an invalid request: the dispatcher answers it
		m.Header.Set(wire.HdrMsgID, "bad-twice")
		m.Header.Set(wire.HdrReplyTo, inbox)
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	next := func(what string) *nats.Msg {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no reply", what)
			return nil
		}
	}
	publish()
	first := next("the request")
	time.Sleep(200 * time.Millisecond) // past the duplicate window
	publish()
	again := next("the request sent again")
	if string(again.Data) != string(first.Data) || again.Header.Get(wire.HdrStatus) != first.Header.Get(wire.HdrStatus) {
		t.Fatalf("sent again: %s %s, want the stored %s %s", again.Header.Get(wire.HdrStatus), again.Data, first.Header.Get(wire.HdrStatus), first.Data)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		info, err := s.Info(t.Context())
		if err != nil {
			return err
		}
		if info.State.LastSeq < 2 || info.State.Msgs != 0 {
			return fmt.Errorf("second copy not settled: %+v", info.State)
		}
		return nil
	})
	select {
	case m := <-got:
		t.Fatalf("a third reply: %s %s", m.Header.Get(wire.HdrStatus), m.Data)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestReplyLost: a reply lost with the server of the one answering (it
// died just after the publish) leaves the agent's connection untouched;
// the SDK still finds the answer in herd_results, within seconds.
func TestReplyLost(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	c, err := client.New(nc, client.WithAgent("lost"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	go storeFound(t, js, nil)
	askFound(t, c, 30*time.Second)
}

// run runs f until the test ends and waits for it to return.
func run(t *testing.T, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// replyCount counts the messages on an inbox.
type replyCount struct{ atomic.Int32 }

// countReplies subscribes to a new inbox on nc until the test ends and
// counts every message on it.
func countReplies(t *testing.T, nc *nats.Conn) (string, *replyCount) {
	t.Helper()
	inbox := nats.NewInbox()
	n := &replyCount{}
	sub, err := nc.Subscribe(inbox, func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return inbox, n
}

// wantOne fails the test unless exactly one reply came for what, after
// giving a second reply, which would be on its way by now, a moment to land.
func (n *replyCount) wantOne(t *testing.T, what string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d replies for %s, want 1", got, what)
	}
}

// storeFound plays herd for one request: it takes it from req_normal, runs
// before (if not nil), stores the answer "found" by w1 in herd_results
// without replying, and acknowledges it. Run it in its own goroutine; it
// reports errors with t.Error.
func storeFound(t *testing.T, js jetstream.JetStream, before func()) {
	cons, err := js.Consumer(t.Context(), wire.StreamReq, "req_normal")
	if err != nil {
		t.Error(err)
		return
	}
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Error(err)
		return
	}
	for m := range msgs.Messages() {
		if before != nil {
			before()
		}
		store, err := outcome.NewStore(t.Context(), js)
		if err != nil {
			t.Error(err)
			return
		}
		o := &outcome.Outcome{RequestID: m.Headers().Get(wire.HdrMsgID), Status: 200, Worker: "w1",
			Body: json.RawMessage(`{"model":"tiny","response":"found","done":true}`)}
		if err := store.SaveResult(t.Context(), o); err != nil {
			t.Error(err)
		}
		_ = m.Ack()
	}
}

// askFound asks through c and fails the test unless the SDK returns the
// answer storeFound stored (from w1) within timeout.
func askFound(t *testing.T, c *client.Client, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	resp, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: "p"})
	if err != nil {
		t.Fatalf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if resp.Response != "found" || meta.Worker != "w1" {
		t.Fatalf("answer %+v, meta %+v", resp, meta)
	}
	t.Logf("answer found in herd_results %v after the call", time.Since(start).Round(time.Millisecond))
}
