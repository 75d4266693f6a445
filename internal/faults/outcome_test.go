package faults

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// nobodyModel is a model no worker serves.
const nobodyModel = "herd-nobody"

// TestEveryWorkerKilled (exactly one outcome, item 1): both workers are
// SIGKILLed under load and restarted 12s later, while requests keep
// arriving. Once their registrations are stale (worker_stale_after 8s), so
// that the dispatcher knows no live worker at all, requests for a model
// nobody serves come in, with a Herd-Timeout of 2s and without
// (queue.no_worker_wait 10s). No request waits for ever and none is acked
// into a batch nobody reads: every acknowledged id has one outcome, those
// for the missing model 504 deadline_exceeded (with the timeout) or 404
// model_not_found.
func TestEveryWorkerKilled(t *testing.T) {
	h := start(t, options{Env: []string{"HERD_QUEUE__NO_WORKER_WAIT=10s", "HERD_DISPATCHER__WORKER_STALE_AFTER=8s"}})
	l := h.Ledger()
	var nobody []string
	c := underLoadOn(t, h, l, "every worker killed", func(int) {
		h.Kill(worker1Name)
		h.Kill(worker2Name)
		time.Sleep(9 * time.Second) // requests arrive while no worker runs; registrations go stale
		for i := range 3 {
			nobody = append(nobody,
				l.Send(Req{Model: nobodyModel, Prompt: fmt.Sprintf("nobody serves this %d", i), Options: map[string]any{"num_predict": 4},
					Call: []client.CallOption{client.Timeout(2 * time.Second)}}),
				l.Send(Req{Model: nobodyModel, Prompt: fmt.Sprintf("nobody serves this either %d", i), Options: map[string]any{"num_predict": 4}}))
		}
		time.Sleep(3 * time.Second) // the Herd-Timeout passes with no worker
		h.Restart(worker1Name)
		h.Restart(worker2Name)
	})
	for i, id := range nobody {
		e := l.Entry(id)
		var herr *client.Error
		errors.As(e.Err, &herr)
		took := time.Duration(0)
		if e.Meta != nil {
			took = time.Duration(e.Meta.TotalMs) * time.Millisecond
		}
		withTimeout := i%2 == 0
		t.Logf("%s (timeout %v): %d %v after %v", e.Req.Prompt, withTimeout, e.Status, e.Err, took)
		switch {
		case herr == nil:
			t.Errorf("%s answered %d (%v), want an error reply", e.Req.Prompt, e.Status, e.Err)
		case withTimeout && herr.Code != wire.CodeDeadlineExceeded:
			t.Errorf("%s with Herd-Timeout 2s: %v, want 504 deadline_exceeded", e.Req.Prompt, e.Err)
		case !withTimeout && herr.Code != wire.CodeModelNotFound:
			t.Errorf("%s: %v, want 404 model_not_found", e.Req.Prompt, e.Err)
		}
	}
	if c.Lost != 0 || c.Duplicated != 0 {
		t.Errorf("lost %d, duplicated %d", c.Lost, c.Duplicated)
	}
}

// TestRawClientRecovers (item 2): a client that is not the Go SDK, the
// real nats CLI, asks on herd.ask.high.cli with its own Nats-Msg-Id and
// gives up after 1s while herd-slow generates; the dispatcher that took
// the ask is SIGKILLed while the request runs and restarted. The answer
// the worker sent meanwhile reached no one. The CLI recovers it as
// docs/protocol.md says: herd.lookup.cli.<id> until it has an outcome,
// then the same ask again, which returns the stored answer without
// running the request again; Ollama ran it once.
func TestRawClientRecovers(t *testing.T) {
	cli := testbin.Tool(t, "nats")
	h := start(t, options{NoOptimizer: true})
	id := "cli=job-" + nuid.Next()
	prompt := "a raw client recovers its answer " + id
	body := fmt.Sprintf(`{"model":%q,"prompt":%q,"options":{"num_predict":48,"temperature":0.8}}`, slowModel, prompt)
	ask := wire.AskSubject(wire.High, "cli")
	first, err := harness.NATSRequest(cli, h.URL, "1s", ask, body, wire.HdrMsgID+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	running := waitCall(t, h, prompt, 0, 0)
	h.Kill(dispatcherName)
	h.Restart(dispatcherName)
	lookup := wire.LookupSubject("cli", id)
	var found harness.CLIReply
	lookups := 0
	natstest.CheckFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		r, err := harness.NATSRequest(cli, h.URL, "5s", lookup, "")
		lookups++
		if err != nil {
			return err
		}
		if r.Status == "" {
			return errors.New("no outcome yet")
		}
		found = r
		return nil
	})
	again, err := harness.NATSRequest(cli, h.URL, "20s", ask, body, wire.HdrMsgID+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	calls := h.Proxy.Calls("/api/generate", prompt)
	ran := 0
	for _, c := range calls {
		if c.Status == http.StatusOK && c.Done && !c.WorkerGone {
			ran++
		}
	}
	t.Logf("first ask: status %q (the CLI gave up); call started %s, dispatcher killed and restarted; lookup answered %s after %d tries; the same ask again: %s, same bytes %v; Ollama calls %d (%d run to the end); ledger: lost=%d duplicated=%d",
		first.Status, running.Start.Format("15:04:05.000"), found.Status, lookups, again.Status, again.Body == found.Body, len(calls), ran,
		b2i(found.Status == ""), b2i(ran > 1))
	if first.Status != "" {
		t.Fatalf("the first ask was answered within 1s (%s): the scenario needs a lost answer", first.Status)
	}
	if found.Status != "200" || !strings.Contains(found.Body, `"done":true`) {
		t.Errorf("lookup: %s %s, want the answer", found.Status, found.Body)
	}
	if again.Status != found.Status || again.Body != found.Body {
		t.Errorf("the same ask again: %s %s, want the stored %s %s", again.Status, again.Body, found.Status, found.Body)
	}
	if ran != 1 {
		t.Errorf("Ollama ran the request to its end %d times, want once", ran)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDispatcherKilledSettlingAdvisory (item 3): a poison crashes its
// worker on every delivery (queue.max_deliver 2), so JetStream gives it up
// and its max-deliveries advisory lands in HERD_ADVISORIES; the dispatcher
// is SIGKILLed the moment the advisory is published, while it settles it,
// and restarted. The request still ends with one outcome: one 500
// internal reply and one dead letter.
func TestDispatcherKilledSettlingAdvisory(t *testing.T) {
	const maxDeliver = 2
	h := start(t, options{AckWait: shortAckWait, MaxDeliver: maxDeliver, NoOptimizer: true})
	const pill = "POISON-PILL-ADVISORY"
	seen := make(chan string, maxDeliver+2)
	h.Proxy.Intercept(func(_ http.ResponseWriter, r *http.Request, c *Call) bool {
		if !inference(c.Path) || !c.Has(pill) {
			return false
		}
		seen <- c.Worker
		<-r.Context().Done() // held until its worker is gone
		return true
	})
	defer h.Proxy.Intercept(nil)
	// The dispatcher dies as the advisory is published: before, during or
	// just after its consumer takes it from HERD_ADVISORIES.
	advisory := make(chan *nats.Msg, 4)
	nc := h.Connect()
	sub, err := nc.ChanSubscribe(wire.MaxDeliveriesPrefix+".>", advisory)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	natstest.Flush(t, nc)
	l := h.Ledger()
	id := l.Send(Req{Model: tinyModel, Prompt: pill, Options: map[string]any{"num_predict": 8}})
	for d := 1; d <= maxDeliver; d++ {
		select {
		case victim := <-seen:
			h.Kill(victim)
			h.Restart(victim)
		case <-time.After(60 * time.Second):
			t.Fatalf("delivery %d of the poison never reached Ollama", d)
		}
	}
	select {
	case <-advisory:
		h.Kill(dispatcherName)
	case <-time.After(60 * time.Second):
		t.Fatal("no max-deliveries advisory")
	}
	killed := time.Now()
	early := l.Entry(id)
	time.Sleep(time.Second)
	h.Restart(dispatcherName)
	wait(t, l)
	c := l.Check(t)
	e := l.Entry(id)
	t.Logf("dispatcher killed as the advisory came (the caller had %d replies then); restarted; poison answered %v %v after the kill (replies %v), dead letters %q; ledger %s",
		len(early.Replies), e.Err, time.Since(killed).Round(time.Millisecond), e.Replies, e.DeadReasons, c)
	var herr *client.Error
	if !errors.As(e.Err, &herr) || herr.Code != wire.CodeInternal {
		t.Errorf("poison answered %v, want 500 internal", e.Err)
	}
	if len(e.DeadReasons) != 1 {
		t.Errorf("poison dead letters %q, want one", e.DeadReasons)
	}
}

// TestWorkerKilledMidStream (item 5): streaming requests on herd-slow at
// temperature 0.8 (each run samples anew), a worker SIGKILLed while it
// streams to its caller and restarted, twice, under light load. No
// caller's chunks start again (Herd-Seq strictly increasing): a cut
// stream ends 503 backend_unavailable, retryable, or with the answer it
// was resuming; every acknowledged id has one outcome, none spliced.
func TestWorkerKilledMidStream(t *testing.T) {
	h := start(t, options{AckWait: shortAckWait, NoOptimizer: true})
	l := h.Ledger()
	var cut []string
	kill := func(round int) {
		prompt := fmt.Sprintf("a story streamed while its worker dies %d", round)
		id := l.Send(Req{Model: slowModel, Prompt: prompt, Stream: true, Options: map[string]any{"num_predict": 400, "temperature": 0.8}})
		call := waitCall(t, h, prompt, 0, 300)
		natstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			if l.Entry(id).Chunks < 3 {
				return errors.New("the caller has fewer than 3 chunks")
			}
			return nil
		})
		h.Kill(call.Worker)
		t.Logf("round %d: %s killed after the caller got %d chunks", round, call.Worker, l.Entry(id).Chunks)
		cut = append(cut, id)
		time.Sleep(time.Second)
		h.Restart(call.Worker)
	}
	c := underLoadOn(t, h, l, "worker killed mid-stream", kill, kill)
	for _, id := range cut {
		e := l.Entry(id)
		var herr *client.Error
		t.Logf("cut stream %s: %d chunks, Herd-Seq strictly increasing %v, ended %d %v", id, e.Chunks, !e.Spliced(), e.Status, e.Err)
		switch {
		case e.Status == http.StatusOK:
		case errors.As(e.Err, &herr) && herr.Code == wire.CodeBackendUnavailable && herr.Retryable:
		default:
			t.Errorf("cut stream %s ended %d (%v), want 503 backend_unavailable retryable or the resumed answer", id, e.Status, e.Err)
		}
	}
	if c.Spliced != 0 {
		t.Errorf("%d streams spliced: %v", c.Spliced, c.SplicedIDs)
	}
}
