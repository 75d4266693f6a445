package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestNoWorkerLateWorker: a request that arrives while no worker is
// registered (start-up, every worker restarting) waits for one and is
// answered when it comes.
func TestNoWorkerLateWorker(t *testing.T) {
	s := newStack(t, stackOpts{noWorkers: true})
	l := s.ledger()
	l.send(wire.High, "alice", "early", genBody("tiny", "before any worker", ""))
	time.Sleep(2 * time.Second) // the gap before a worker starts: the scenario, not a wait for a result
	wc := worker.DefaultConfig()
	wc.ID = "late"
	wc.PollInterval = 50 * time.Millisecond
	s.startWorker(wc)
	l.wait([]string{"early"}, 15*time.Second)
	if m := l.final("early"); status(m) != 200 {
		t.Fatalf("answered %d %s, want 200 once a worker serves the model", status(m), m.Data)
	}
}

// TestNoWorkerEveryRequestEnds: with no worker for a model (a misspelled
// name, a model taken out of service, no worker at all) a request ends:
// 504 at its deadline, else 404 model_not_found after queue.no_worker_wait;
// nothing is left in HERD_BATCH for nobody to read.
func TestNoWorkerEveryRequestEnds(t *testing.T) {
	s := newStack(t, stackOpts{noWorkers: true, dcfg: func(c *dispatcherConfig) { c.NoWorkerWait = 2 * time.Second }})
	l := s.ledger()
	start := time.Now()
	l.send(wire.High, "alice", "ghost-deadline", genBody("ghost", "x", ""), wire.HdrTimeout, "1s")
	l.send(wire.Normal, "alice", "ghost", genBody("ghost", "x", ""))
	l.wait([]string{"ghost-deadline", "ghost"}, 15*time.Second)
	if m := l.final("ghost-deadline"); status(m) != 504 || errorBody(t, m).Code != wire.CodeDeadlineExceeded {
		t.Errorf("ghost with a deadline answered %d %s, want 504 deadline_exceeded", status(m), m.Data)
	}
	m := l.final("ghost")
	if eb := errorBody(t, m); status(m) != 404 || eb.Code != wire.CodeModelNotFound || !strings.Contains(eb.Error, "no worker") {
		t.Errorf("ghost answered %d %s, want 404 model_not_found naming the missing worker", status(m), m.Data)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("ghost answered after %v, before queue.no_worker_wait", took)
	}
	if n := streamMsgs(t, s, wire.StreamBatch); n != 0 {
		t.Errorf("%d batches left in HERD_BATCH with no worker to read them", n)
	}
	if lost, dup := l.counts([]string{"ghost-deadline", "ghost"}); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}

func streamMsgs(t *testing.T, s *stack, name string) uint64 {
	t.Helper()
	_, js := s.srv.Connect(t)
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// ask sends a plain NATS request on the ask door as agent, with id as
// Nats-Msg-Id when not empty, and returns the final reply.
func ask(t *testing.T, nc *nats.Conn, agent, id string, body []byte, hdr ...string) *nats.Msg {
	t.Helper()
	m := nats.NewMsg(wire.AskSubject(wire.High, agent))
	m.Data = body
	if id != "" {
		m.Header.Set(wire.HdrMsgID, id)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("ask %s as %s: %v", id, agent, err)
	}
	return r
}

// TestAskResendGetsStoredOutcome: a raw NATS client that lost its answer
// (its inbox gone while the request ran) asks again under the same id and
// gets the stored outcome, once run; another agent asking under that id is
// refused and reads nothing.
func TestAskResendGetsStoredOutcome(t *testing.T) {
	s := newStack(t, stackOpts{})
	nc, js := s.srv.Connect(t)
	body := genBody("tiny", "resend me", `,"options":{"temperature":0.9}`)
	// First ask: its reply subject has no subscriber, so the answer is lost.
	lost := nats.NewMsg(wire.AskSubject(wire.High, "alice"))
	lost.Data = body
	lost.Header.Set(wire.HdrMsgID, "job-1")
	lost.Reply = nc.NewRespInbox()
	if err := nc.PublishMsg(lost); err != nil {
		t.Fatal(err)
	}
	results, err := js.KeyValue(t.Context(), wire.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		e, err := results.Get(t.Context(), "job-1")
		if err != nil {
			return err
		}
		stored = e.Value()
		return nil
	})
	var o struct {
		Body json.RawMessage `json:"body"`
	}
	if err := json.Unmarshal(stored, &o); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // within JetStream's duplicate window, and once answered
		r := ask(t, nc, "alice", "job-1", body)
		if status(r) != 200 || string(r.Data) != string(o.Body) {
			t.Fatalf("ask %d again: %d %s, want the stored answer %s", i+1, status(r), r.Data, o.Body)
		}
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Errorf("Ollama ran %d times for one id, want 1", n)
	}
	// Another agent cannot use alice's id: it is refused and sees nothing.
	r := ask(t, nc, "bob", "job-1", body)
	if status(r) != 400 || string(r.Data) == string(o.Body) {
		t.Fatalf("bob asking under alice's id: %d %s, want 400 without her answer", status(r), r.Data)
	}
}

// lookup asks herd.lookup.<agent>.<id> and returns the reply.
func lookup(t *testing.T, nc *nats.Conn, agent, id string) *nats.Msg {
	t.Helper()
	r, err := nc.Request(wire.LookupSubject(agent, id), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("lookup %s/%s: %v", agent, id, err)
	}
	return r
}

// TestLookupEveryOwnedID: herd.lookup.<agent>.<id> answers for every id
// the agent owns, whatever door it came through and whether or not the
// client chose it; never for another agent.
func TestLookupEveryOwnedID(t *testing.T) {
	s := newStack(t, stackOpts{})
	nc, _ := s.srv.Connect(t)
	// An ask without an id: herd assigns one.
	r := ask(t, nc, "alice", "", genBody("tiny", "assigned", ""))
	id := r.Header.Get(wire.HdrRequestID)
	if status(r) != 200 || id == "" {
		t.Fatalf("ask: %d id %q", status(r), id)
	}
	// A durable request with an id the client chose, not scoped.
	l := s.ledger()
	l.send(wire.Normal, "alice", "plain-7", genBody("tiny", "chosen", ""))
	l.wait([]string{"plain-7"}, 10*time.Second)
	for _, c := range []struct{ agent, id string }{{"alice", id}, {"alice", "plain-7"}} {
		m := lookup(t, nc, c.agent, c.id)
		if status(m) != 200 || m.Header.Get(wire.HdrRequestID) != c.id {
			t.Errorf("lookup %s/%s: status %q id %q, want the stored answer", c.agent, c.id, m.Header.Get(wire.HdrStatus), m.Header.Get(wire.HdrRequestID))
		}
	}
	for _, c := range []struct{ agent, id string }{{"bob", id}, {"bob", "plain-7"}} {
		if m := lookup(t, nc, c.agent, c.id); m.Header.Get(wire.HdrStatus) != "" || len(m.Data) != 0 {
			t.Errorf("bob looked up alice's %s: %q %s", c.id, m.Header.Get(wire.HdrStatus), m.Data)
		}
	}
}

// TestDurableResendAfterDuplicateWindow: a durable request re-sent under
// its id once JetStream no longer drops it as a duplicate gets the stored
// outcome on its (new) reply subject, without running again.
func TestDurableResendAfterDuplicateWindow(t *testing.T) {
	s := newStack(t, stackOpts{})
	_, js := s.srv.Connect(t)
	natstest.ShortDuplicates(t, js, wire.StreamReq, 500*time.Millisecond)
	l := s.ledger()
	body := genBody("tiny", "again later", `,"options":{"temperature":0.9}`)
	l.send(wire.Normal, "alice", "late-retry", body)
	l.wait([]string{"late-retry"}, 10*time.Second)
	first := l.final("late-retry")
	time.Sleep(time.Second) // past the duplicate window: the scenario
	l2 := s.ledger()
	l2.send(wire.Normal, "alice", "late-retry", body)
	l2.wait([]string{"late-retry"}, 10*time.Second)
	again := l2.final("late-retry")
	if status(again) != 200 || string(again.Data) != string(first.Data) {
		t.Fatalf("re-sent request answered %d %s, want the stored %s", status(again), again.Data, first.Data)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Errorf("Ollama ran %d times, want 1", n)
	}
}

// TestAdvisoryWhileNoDispatcher: JetStream gives a request up while no
// dispatcher runs (all restarting). The max-deliveries advisory is kept
// durably, so the first dispatcher to start settles it: one outcome.
func TestAdvisoryWhileNoDispatcher(t *testing.T) {
	const maxDeliver = 2
	s := newStack(t, stackOpts{overrides: provision.Overrides{AckWait: 500 * time.Millisecond, MaxDeliver: maxDeliver}, lateDispatcher: true})
	nc, js := s.srv.Connect(t)
	adv, err := nc.SubscribeSync(wire.MaxDeliveriesAdvisory(wire.StreamReq) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Flush(t, nc)
	l := s.ledger()
	l.send(wire.High, "crash", "orphan2", genBody("tiny", "given up while no dispatcher runs", ""))
	cons, err := js.Consumer(t.Context(), wire.StreamReq, wire.ReqConsumerName(wire.High))
	if err != nil {
		t.Fatal(err)
	}
	for d := 1; d <= maxDeliver; d++ {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for range b.Messages() { // taken, never acknowledged
		}
	}
	// JetStream gives the message up when it would deliver it again: a
	// pull after the last ack wait (nothing is delivered).
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range b.Messages() {
		t.Fatal("delivered past max_deliver")
	}
	if _, err := adv.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no advisory: %v", err)
	}
	s.startDispatcher() // after the advisory was sent
	l.wait([]string{"orphan2"}, 10*time.Second)
	if m := l.final("orphan2"); status(m) != 500 {
		t.Fatalf("given-up request answered %d %s, want 500", status(m), m.Data)
	}
	time.Sleep(300 * time.Millisecond)
	if lost, dup := l.counts([]string{"orphan2"}); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}

// TestCancelOnlyByOwner: a cancel takes effect only when the agent that
// sends it owns the request.
func TestCancelOnlyByOwner(t *testing.T) {
	s := newStack(t, stackOpts{})
	release := s.fake.Block()
	defer release()
	nc, _ := s.srv.Connect(t)
	l := s.ledger()
	l.send(wire.High, "alice", "blocker", genBody("tiny", "holds the slot", ""))
	l.send(wire.High, "alice", "victim", genBody("tiny", "queued", ""))
	waitBatched(t, s)
	if err := nc.Publish(wire.CancelSubject("bob", "victim"), nil); err != nil {
		t.Fatal(err)
	}
	natstest.Flush(t, nc)
	time.Sleep(300 * time.Millisecond)
	if m := l.final("victim"); m != nil {
		t.Fatalf("bob's cancel of alice's request answered it: %d %s", status(m), m.Data)
	}
	if err := nc.Publish(wire.CancelSubject("alice", "victim"), nil); err != nil {
		t.Fatal(err)
	}
	l.wait([]string{"victim"}, 10*time.Second)
	if m := l.final("victim"); status(m) != 499 {
		t.Fatalf("alice's cancel: %d %s, want 499", status(m), m.Data)
	}
	release()
	l.wait([]string{"blocker"}, 10*time.Second)
}

// TestForeignScopedID: an id scoped to another agent is refused, and its
// owner never reads the refusal as its own outcome.
func TestForeignScopedID(t *testing.T) {
	s := newStack(t, stackOpts{})
	nc, _ := s.srv.Connect(t)
	l := s.ledger()
	l.send(wire.Normal, "alice", "bob=x", genBody("tiny", "as bob", ""))
	l.wait([]string{"bob=x"}, 10*time.Second)
	if m := l.final("bob=x"); status(m) != 400 {
		t.Fatalf("alice publishing bob's id: %d %s, want 400", status(m), m.Data)
	}
	if m := lookup(t, nc, "bob", "bob=x"); m.Header.Get(wire.HdrStatus) != "" {
		t.Fatalf("bob reads the outcome of alice's request under his id: %q %s", m.Header.Get(wire.HdrStatus), m.Data)
	}
	if r := ask(t, nc, "alice", "bob=y", genBody("tiny", "as bob", "")); status(r) != 400 {
		t.Fatalf("alice asking under bob's id: %d %s, want 400", status(r), r.Data)
	}
	if n := s.fake.Calls("generate"); n != 0 {
		t.Fatalf("Ollama ran %d requests under another agent's id", n)
	}
}

// TestMappedReplyRefused: a durable request may not name a mapped reply
// subject (_R_.…) in Herd-Reply-To: publishing there would answer another
// agent's pending request across accounts. It is dead-lettered unanswered.
func TestMappedReplyRefused(t *testing.T) {
	s := newStack(t, stackOpts{})
	nc, js := s.srv.Connect(t)
	spy, err := nc.SubscribeSync("_R_.>")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Flush(t, nc)
	m := nats.NewMsg(wire.ReqSubject(wire.High, "alice"))
	m.Data = genBody("tiny", "x", "")
	m.Header.Set(wire.HdrMsgID, "mapped")
	m.Header.Set(wire.HdrReplyTo, "_R_.abc.def")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	dlq, err := js.Stream(t.Context(), wire.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := dlq.GetLastMsgForSubject(t.Context(), wire.DLQSubject(wire.High, "alice"))
		return err
	})
	if r, err := spy.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("herd published on %s: %s", r.Subject, r.Data)
	}
}

var _ = fmt.Sprint
