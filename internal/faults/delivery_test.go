package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// deliveries is queue.max_deliver for TestDeliveryFaults.
const deliveries = 3

// workerAttempts is worker.attempts: tries of a failing call within one
// delivery (herd's default).
const workerAttempts = 3

// TestDeliveryFaults: what JetStream's delivery guarantees meet in herd,
// one scenario after the other on one stack (queue.ack_wait 3s,
// queue.max_deliver 3): a poison that crashes its worker, a publisher
// retrying with the same Nats-Msg-Id, an agent that cancels and one that
// disconnects, and last a poison Ollama fails every time.
func TestDeliveryFaults(t *testing.T) {
	h := start(t, options{AckWait: shortAckWait, MaxDeliver: deliveries})
	advisories := watchAdvisories(t, h)

	t.Run("poison that crashes its worker every time", func(t *testing.T) {
		// Every call for this prompt makes its worker die (SIGKILL) while
		// Ollama works on it, so no delivery ever settles it: JetStream
		// gives up after max_deliver and says so in an advisory.
		const pill = "POISON-PILL-CRASH"
		seen := make(chan string, deliveries+2)
		h.Proxy.Intercept(func(_ http.ResponseWriter, r *http.Request, c *Call) bool {
			if !inference(c.Path) || !c.Has(pill) {
				return false
			}
			seen <- c.Worker
			<-r.Context().Done() // held until its worker is gone
			return true
		})
		defer h.Proxy.Intercept(nil)
		js := h.JetStream()
		l := h.Ledger()
		begin := time.Now()
		id := l.Send(Req{Model: tinyModel, Prompt: pill, Options: map[string]any{"num_predict": 8}, Call: []client.CallOption{client.At(client.Low)}})
		var seq uint64
		var victims []string
		for d := 1; d <= deliveries; d++ {
			var victim string
			select {
			case victim = <-seen:
			case <-time.After(60 * time.Second):
				t.Fatalf("delivery %d of the poison never reached Ollama", d)
			}
			if d == 1 {
				seq = batchSeq(t, js, pill)
			}
			victims = append(victims, fmt.Sprintf("%s@%v", victim, ms(time.Since(begin))))
			h.Kill(victim)
			h.Restart(victim)
		}
		a := advisories.wait(t, wire.StreamBatch, seq, time.Minute)
		wait(t, l)
		l.Check(t)
		e := l.Entry(id)
		calls := h.Proxy.Calls("/api/generate", pill)
		t.Logf("poison (HERD_BATCH seq %d) crashed %v; advisory %v after it was sent: %s/%s seq %d after %d deliveries; answered %v; dead letter %q; Ollama called %d times; extra deliveries seen %d",
			seq, victims, ms(a.at.Sub(begin)), a.Stream, a.Consumer, a.StreamSeq, a.Deliveries, e.Err, e.DeadReasons, len(calls), len(seen))
		if a.Deliveries != deliveries {
			t.Errorf("advisory after %d deliveries, want %d", a.Deliveries, deliveries)
		}
		var herr *client.Error
		if !errors.As(e.Err, &herr) || herr.Code != wire.CodeInternal {
			t.Errorf("poison answered %v, want 500 internal", e.Err)
		}
		if len(e.DeadReasons) != 1 || !strings.Contains(e.DeadReasons[0], fmt.Sprintf("delivered %d times", deliveries)) {
			t.Errorf("poison dead letters %q, want one saying it was delivered %d times", e.DeadReasons, deliveries)
		}
		if len(calls) != deliveries {
			t.Errorf("Ollama saw %d calls for the poison, want one per delivery (%d)", len(calls), deliveries)
		}
	})

	t.Run("publisher retries with the same Nats-Msg-Id", func(t *testing.T) {
		sameID(t, h)
	})

	t.Run("agent cancels", func(t *testing.T) {
		const prompt = "a very long story the agent cancels"
		l := h.Ledger()
		id := l.Send(Req{Model: slowModel, Prompt: prompt, Stream: true, Options: map[string]any{"num_predict": 3000}})
		call := waitCall(t, h, prompt, time.Second, 200)
		canceledAt := time.Now()
		if err := h.Connect().Publish(wire.CancelSubject("ledger", id), nil); err != nil {
			t.Fatal(err)
		}
		ended, ok := waitEnded(h, prompt, call.Start, 15*time.Second)
		if !ok {
			t.Fatalf("Ollama's call still open 15s after the cancel")
		}
		wait(t, l)
		l.Check(t)
		e := l.Entry(id)
		t.Logf("canceled %v into the generation (%d bytes streamed); the worker closed Ollama's call %v after the cancel; caller got %v",
			ms(canceledAt.Sub(call.Start)), call.Bytes, ms(ended.End.Sub(canceledAt)), e.Err)
		if !ended.WorkerGone || ended.End.Sub(canceledAt) > 3*time.Second {
			t.Errorf("Ollama's call ended %v after the cancel (closed by the worker: %v), want closed within 3s", ended.End.Sub(canceledAt), ended.WorkerGone)
		}
		if e.Status != 499 {
			t.Errorf("canceled request ended %d (%v), want 499", e.Status, e.Err)
		}
	})

	t.Run("agent disconnects", func(t *testing.T) {
		agentDisconnects(t, h, true)
	})

	t.Run("agent disconnects, not streaming", func(t *testing.T) {
		agentDisconnects(t, h, false)
	})

	// Last: whatever it leaves of herd-tiny's breaker stays out of the
	// other scenarios.
	t.Run("poison that Ollama fails every time", func(t *testing.T) {
		// Ollama fails this one prompt with a retryable 500 on every call;
		// the load around it goes on.
		const pill = "POISON-PILL-500"
		h.Proxy.Intercept(failBody(pill, http.StatusInternalServerError, "llama runner process has terminated: poison"))
		defer h.Proxy.Intercept(nil)
		l := h.Ledger()
		stop := l.Load(loadEvery, lightLoad("beside a failing poison"))
		begin := time.Now()
		id := l.Send(Req{Model: tinyModel, Prompt: pill, Options: map[string]any{"num_predict": 8}, Call: []client.CallOption{client.At(client.Low)}})
		natstest.CheckFor(t, 90*time.Second, 50*time.Millisecond, func() error {
			if !l.Entry(id).Returned {
				return errors.New("poison not settled yet")
			}
			return nil
		})
		settled := time.Since(begin)
		stop()
		wait(t, l)
		c := l.Check(t)
		e := l.Entry(id)
		calls := h.Proxy.Calls("/api/generate", pill)
		// The worker settles it on its last delivery (dead letter, error
		// reply, ack), so JetStream never gives up on it: no advisory.
		t.Logf("poison settled %v after it was sent: %v, dead letter %q; Ollama called %d times (%d deliveries x %d attempts); max-deliveries advisories since: %d",
			ms(settled), e.Err, e.DeadReasons, len(calls), deliveries, workerAttempts, advisories.count(wire.StreamBatch, begin))
		var herr *client.Error
		if !errors.As(e.Err, &herr) || herr.Status != http.StatusServiceUnavailable || herr.Code != wire.CodeBackendUnavailable {
			t.Errorf("poison answered %v, want 503 backend_unavailable", e.Err)
		}
		if len(e.DeadReasons) != 1 || !strings.Contains(e.DeadReasons[0], "failed on every delivery") {
			t.Errorf("poison dead letters %q, want one saying it failed on every delivery", e.DeadReasons)
		}
		if len(calls) != deliveries*workerAttempts {
			t.Errorf("Ollama called %d times for the poison, want %d deliveries x %d attempts", len(calls), deliveries, workerAttempts)
		}
		// One request failing on every attempt and delivery is one
		// failure for herd-tiny's breaker, not one per call: the breaker
		// judges the model, so the load beside the poison is served.
		breaker := c.ByStatus["503 "+string(wire.CodeBreakerOpen)]
		t.Logf("beside the poison: %d answered 200, %d refused by herd-tiny's breaker (503 breaker_open, retryable)", c.ByStatus["200"], breaker)
		if c.Dead != 1 || c.ByStatus["200"]+1 != c.Acked {
			t.Errorf("%d dead letters, outcomes %v: want the poison's dead letter and every other request answered 200 (its %d failed calls must not open herd-tiny's breaker)",
				c.Dead, c.ByStatus, len(calls))
		}
	})

}

// sameID: a publisher that sends one request three times with the same
// Nats-Msg-Id (at once, while it runs, after its answer) gets one run and
// one answer; the SDK asked again with the same id finds that answer.
func sameID(t *testing.T, h *Harness) {
	nc := h.Connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	inbox := "_RETRIER_" + nuid.Next()
	var mu sync.Mutex
	var replies []int
	sub, err := nc.Subscribe(inbox+".>", func(m *nats.Msg) {
		if s := m.Header.Get(wire.HdrStatus); s != "" {
			var code int
			_, _ = fmt.Sscan(s, &code)
			mu.Lock()
			replies = append(replies, code)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	id := "retried-" + nuid.Next()
	prompt := "one run however often it is published " + id
	body := fmt.Appendf(nil, `{"model":%q,"prompt":%q,"options":{"num_predict":64}}`, slowModel, prompt)
	publish := func(when string) *jetstream.PubAck {
		t.Helper()
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "retrier"))
		m.Data = body
		m.Header.Set(wire.HdrMsgID, id)
		m.Header.Set(wire.HdrReplyTo, inbox+"."+id)
		ack, err := js.PublishMsg(t.Context(), m)
		if err != nil {
			t.Fatalf("publish %s: %v", when, err)
		}
		return ack
	}
	got := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), replies...)
	}
	// Ollama's call is held open until the publish "while it runs" is
	// acknowledged: 64 tokens of herd-slow outlast 200ms here, but on a
	// faster machine the call could end before it was seen running.
	hold := make(chan struct{})
	h.Proxy.Intercept(func(_ http.ResponseWriter, r *http.Request, c *Call) bool {
		if inference(c.Path) && c.Has(prompt) {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		return false
	})
	defer h.Proxy.Intercept(nil)
	acks := []*jetstream.PubAck{publish("first"), publish("at once again")}
	waitCall(t, h, prompt, 200*time.Millisecond, 0)
	acks = append(acks, publish("while it runs"))
	close(hold)
	natstest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if len(got()) == 0 {
			return errors.New("no answer yet")
		}
		return nil
	})
	acks = append(acks, publish("after the answer"))
	// The SDK, asked again with the same id, finds the stored answer.
	c, err := client.New(h.Connect(), client.WithAgent("retrier"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, meta, sdkErr := c.Generate(ctx, &api.GenerateRequest{Model: slowModel, Prompt: prompt, Options: map[string]any{"num_predict": 64}},
		client.RequestID(id))
	h.WaitIdle(30 * time.Second)
	time.Sleep(500 * time.Millisecond) // a second answer would be here by now
	calls := h.Proxy.Calls("/api/generate", prompt)
	var dups []bool
	for _, a := range acks {
		dups = append(dups, a.Duplicate)
	}
	answered, duplicated, lost := 0, 0, 0
	switch n := len(got()); {
	case n == 0:
		lost = 1
	case n > 1:
		duplicated = 1
	default:
		answered = 1
	}
	t.Logf("published 4 times with id %s: PubAck duplicate %v, all seq %d; replies on the inbox %v; SDK retry: %d tokens, err %v; Ollama called %d time(s); lost=%d duplicated=%d answered=%d",
		id, dups, acks[0].Sequence, got(), r.EvalCount, sdkErr, len(calls), lost, duplicated, answered)
	if acks[0].Duplicate || !acks[1].Duplicate || !acks[2].Duplicate || !acks[3].Duplicate {
		t.Errorf("PubAck duplicate flags %v, want only the first stored", dups)
	}
	if r := got(); len(r) != 1 || r[0] != http.StatusOK {
		t.Errorf("replies %v, want exactly one 200", r)
	}
	if sdkErr != nil || meta == nil || r.EvalCount == 0 {
		t.Errorf("SDK retry with the same id: %v, want the stored answer", sdkErr)
	}
	if len(calls) != 1 {
		t.Errorf("Ollama called %d times, want once", len(calls))
	}
}

// agentDisconnects: an agent closes its NATS connection in the middle of a
// long generation. Nobody is left to read the answer, so the Ollama work
// should stop. herd notices it for a streamed answer (its chunks reach no
// subscriber) and for a non-streaming one (the worker's presence probes on
// its reply subject's sibling reach no subscriber); the non-streaming agent
// is herd's SDK, whose inbox is one wildcard subscription.
func agentDisconnects(t *testing.T, h *Harness, stream bool) {
	prompt := fmt.Sprintf("a very long story for an agent that disconnects (stream %v)", stream)
	const patience = 15 * time.Second
	nc := h.Connect()
	id := "gone-" + nuid.Next()
	body := fmt.Appendf(nil, `{"model":%q,"prompt":%q,"stream":%v,"options":{"num_predict":3000}}`, slowModel, prompt, stream)
	var streamed int64
	if stream {
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		inbox := nc.NewRespInbox()
		if _, err := nc.SubscribeSync(inbox); err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "leaver"))
		m.Data = body
		m.Header.Set(wire.HdrMsgID, id)
		m.Header.Set(wire.HdrReplyTo, inbox)
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		streamed = 200 // chunks are flowing
	} else {
		c, err := client.New(nc, client.WithAgent("leaver"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // after the measurement: its herd.cancel cannot be sent on the closed connection
		go func() { _, _, _ = c.Raw(ctx, body, client.RequestID(id)) }()
	}
	call := waitCall(t, h, prompt, time.Second, streamed)
	closedAt := time.Now()
	nc.Close()
	ended, ok := waitEnded(h, prompt, call.Start, patience)
	if !ok {
		// Leave the machine as found: stop the orphaned generation.
		_ = h.Connect().Publish(wire.CancelSubject("leaver", id), nil)
		_, _ = waitEnded(h, prompt, call.Start, 10*time.Second)
		t.Errorf("agent (stream %v) disconnected %v into the generation; Ollama's call was still running %v later (it ended only after herd.cancel): nothing stops work whose agent is gone",
			stream, ms(closedAt.Sub(call.Start)), patience)
		return
	}
	t.Logf("agent (stream %v) disconnected %v into the generation; the worker closed Ollama's call %v later", stream, ms(closedAt.Sub(call.Start)), ms(ended.End.Sub(closedAt)))
	if !ended.WorkerGone {
		t.Errorf("Ollama's call ended by itself (%d), not closed by the worker", ended.Status)
	}
}

// lightLoad is traffic beside a scenario's own requests, light enough to
// leave no backlog: herd-tiny over the three priorities, every third a
// short herd-slow generation. Prompts are unique.
func lightLoad(tag string) func(i int) Req {
	prios := []client.Priority{client.Normal, client.High, client.Low}
	return func(i int) Req {
		r := Req{Model: tinyModel, Prompt: fmt.Sprintf("%s %d", tag, i), Options: map[string]any{"num_predict": 8},
			Call: []client.CallOption{client.At(prios[i%3])}}
		if i%3 == 0 {
			r.Model, r.Options = slowModel, map[string]any{"num_predict": 16}
		}
		return r
	}
}

// wait waits (at most two minutes) for every outcome of the ledger.
func wait(t *testing.T, l *Ledger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Errorf("ledger wait: %v (%d calls still waiting)", err, l.Outstanding())
	}
}

// advisory is a JetStream max-deliveries advisory and when it arrived.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	at         time.Time
}

// advisoryLog collects the max-deliveries advisories of a test.
type advisoryLog struct {
	mu  sync.Mutex // guards got
	got []advisory
}

// watchAdvisories subscribes to every max-deliveries advisory
// ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>) for the rest of the test.
func watchAdvisories(t *testing.T, h *Harness) *advisoryLog {
	t.Helper()
	al := &advisoryLog{}
	nc := h.Connect()
	_, err := nc.Subscribe(wire.MaxDeliveriesPrefix+".>", func(m *nats.Msg) {
		var a advisory
		if err := json.Unmarshal(m.Data, &a); err != nil {
			return
		}
		a.at = time.Now()
		al.mu.Lock()
		al.got = append(al.got, a)
		al.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	// The server publishes advisories as other connections' deliveries
	// run out: the subscription must be in place before any of them.
	natstest.Flush(t, nc)
	return al
}

// count counts the advisories for stream that arrived after since.
func (al *advisoryLog) count(stream string, since time.Time) int {
	al.mu.Lock()
	defer al.mu.Unlock()
	n := 0
	for _, a := range al.got {
		if a.Stream == stream && a.at.After(since) {
			n++
		}
	}
	return n
}

// wait waits for the advisory for stream's message seq.
func (al *advisoryLog) wait(t *testing.T, stream string, seq uint64, total time.Duration) advisory {
	t.Helper()
	var found advisory
	natstest.CheckFor(t, total, 20*time.Millisecond, func() error {
		al.mu.Lock()
		defer al.mu.Unlock()
		for _, a := range al.got {
			if a.Stream == stream && a.StreamSeq == seq {
				found = a
				return nil
			}
		}
		return fmt.Errorf("no max-deliveries advisory for %s seq %d (have %d others)", stream, seq, len(al.got))
	})
	return found
}
