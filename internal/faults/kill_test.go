package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// loadEvery is the agents' pace: with every other request a herd-slow
// generation of a second or more, it keeps both workers busy on a shared
// 2-core machine without building a backlog it cannot clear.
const loadEvery = 500 * time.Millisecond

// mixedLoad is the agents' steady traffic: herd-slow generations long
// enough to be mid-flight when something dies, between quick herd-tiny
// ones, over the three priorities. Prompts are unique (tag i), so nothing
// is answered from the cache or coalesced.
func mixedLoad(tag string) func(i int) Req {
	prios := []client.Priority{client.Normal, client.High, client.Low}
	return func(i int) Req {
		r := Req{Model: tinyModel, Prompt: fmt.Sprintf("%s %d", tag, i), Options: map[string]any{"num_predict": 8},
			Call: []client.CallOption{client.At(prios[i%3])}}
		if i%2 == 0 {
			r.Model, r.Options = slowModel, map[string]any{"num_predict": 32}
		}
		return r
	}
}

// underLoad runs faults while the agents of a new ledger send mixedLoad:
// the load starts once, before the first fault, and goes on until every
// fault has run and the stack has served for a while after the last; then
// the ledger waits for every outcome and is checked.
func underLoad(t *testing.T, h *Harness, tag string, faults ...func(round int)) (*Ledger, Counts) {
	t.Helper()
	l := h.Ledger()
	return l, underLoadOn(t, h, l, tag, faults...)
}

// underLoadOn is underLoad with the agents of l, so that faults can send
// requests of their own through it.
func underLoadOn(t *testing.T, h *Harness, l *Ledger, tag string, faults ...func(round int)) Counts {
	t.Helper()
	begin := time.Now()
	stop := l.Load(loadEvery, mixedLoad(tag))
	for i, fault := range faults {
		waitGenerating(t, h, "")
		fault(i + 1)
	}
	time.Sleep(3 * time.Second) // served again for a while after the last fault
	sent := stop()
	loaded := time.Since(begin)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Errorf("ledger wait: %v (%d calls still waiting)", err, l.Outstanding())
	}
	c := l.Check(t)
	once, repeated := l.Runs(h.Proxy)
	t.Logf("%s: %d sent (%d by the steady load) over %v, all settled %v later; prompts generated once %d, more than once %d; proxy saw %v",
		tag, c.Sent, sent, ms(loaded), ms(time.Since(begin)-loaded), once, repeated, h.Proxy.Outcomes("/api/generate"))
	for _, r := range l.Repeats(h.Proxy) {
		t.Logf("repeated: %s", r)
	}
	if c.Answered == 0 {
		t.Errorf("no request answered")
	}
	return c
}

// burst sends n requests at once besides the load: n alike (one prompt,
// temperature 0, so the first leads and the others are held as its
// coalesced followers) and n distinct quick ones, so that a fault right
// after finds requests taken but not yet settled.
func burst(l *Ledger, tag string, n int) {
	for i := range n {
		l.Send(Req{Model: slowModel, Prompt: tag + " alike", Options: map[string]any{"num_predict": 32, "temperature": 0}})
		l.Send(Req{Model: tinyModel, Prompt: fmt.Sprintf("%s distinct %d", tag, i), Options: map[string]any{"num_predict": 8}})
	}
}

// heldRequests counts the requests HERD_REQ's consumers have delivered and
// not yet seen acknowledged (taken by a dispatcher, not settled).
func heldRequests(t *testing.T, h *Harness) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := h.JetStream().Stream(ctx, wire.StreamReq)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	l := s.ListConsumers(ctx)
	for info := range l.Info() {
		n += info.NumAckPending
	}
	return n
}

// waitGenerating waits until a herd-slow generation has run for a while
// on worker (any worker when empty), so that a fault finds work in flight,
// and returns it.
func waitGenerating(t *testing.T, h *Harness, worker string) Call {
	t.Helper()
	var cut Call
	natstest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		for _, c := range h.Proxy.Calls("/api/generate", slowModel, "num_predict") {
			if (worker == "" || c.Worker == worker) && !c.Done && time.Since(c.Start) > 250*time.Millisecond {
				cut = c
				return nil
			}
		}
		return fmt.Errorf("no herd-slow generation running on %q yet", worker)
	})
	return cut
}

// TestWorkerKilledMidGeneration: a worker is killed with SIGKILL in the
// middle of herd-slow generations, three times under load (each worker in
// turn, restarted after); the other worker or the restarted one finishes
// the work, and every acknowledged request has exactly one outcome.
func TestWorkerKilledMidGeneration(t *testing.T) {
	h := start(t, options{})
	var cuts []Call
	victims := []string{worker1Name, worker2Name, worker1Name}
	kill := func(round int) {
		victim := victims[round-1]
		cut := waitGenerating(t, h, victim)
		h.Kill(victim)
		t.Logf("round %d: %s killed %v into a generation", round, victim, ms(time.Since(cut.Start)))
		cuts = append(cuts, cut)
		time.Sleep(time.Second) // the load goes on without it
		h.Restart(victim)
	}
	l, _ := underLoad(t, h, "worker killed", kill, kill, kill)
	// Each generation cut by a kill was run again to an answer, by the
	// other worker or the restarted one.
	for i, cut := range cuts {
		var req struct {
			Prompt string `json:"prompt"`
		}
		_ = json.Unmarshal(cut.Body, &req)
		e, ok := l.ByPrompt(req.Prompt)
		switch {
		case !ok:
			t.Errorf("round %d: the cut generation %q is not the ledger's", i+1, req.Prompt)
		case e.Status != http.StatusOK || e.Meta == nil:
			t.Errorf("round %d: the cut request %q ended %d (%v)", i+1, req.Prompt, e.Status, e.Err)
		default:
			t.Logf("round %d: %q cut on %s, answered by %s", i+1, req.Prompt, cut.Worker, e.Meta.Worker)
		}
	}
}

// TestDispatcherKilled: the dispatcher is killed with SIGKILL under load
// and restarted a second later, twice. Requests it had taken but not batched are
// delivered again after the ack wait; batches it had published but not
// acknowledged the requests of are not run twice.
func TestDispatcherKilled(t *testing.T) {
	h := start(t, options{})
	l := h.Ledger()
	kill := func(round int) {
		burst(l, fmt.Sprintf("dispatcher burst %d", round), 4)
		natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if heldRequests(t, h) == 0 {
				return errors.New("the dispatcher holds no request")
			}
			return nil
		})
		h.Kill(dispatcherName)
		t.Logf("round %d: dispatcher killed holding %d requests taken and not settled", round, heldRequests(t, h))
		time.Sleep(time.Second)
		h.Restart(dispatcherName)
	}
	underLoadOn(t, h, l, "dispatcher killed", kill, kill)
}

// TestNATSServerKilled: nats-server (JetStream fsyncing every write) is
// killed with SIGKILL under load and restarted on the same port and store
// two seconds later. The services and the agents reconnect; every request
// JetStream acknowledged before or after is still served once.
func TestNATSServerKilled(t *testing.T) {
	h := start(t, options{})
	l := h.Ledger()
	underLoadOn(t, h, l, "nats-server killed", func(int) {
		burst(l, "nats burst", 4) // publishes and acks in flight at the kill
		h.Kill(natsName)
		time.Sleep(2 * time.Second) // agents' publishes fail and are retried meanwhile
		h.Restart(natsName)
		h.WaitAllReady()
	})
}

// TestGracefulShutdown: each service in turn (dispatcher, worker-1,
// worker-2, optimizer) is stopped with SIGTERM under load, exits cleanly,
// and is started again; nothing is lost. The dispatcher is stopped right
// after a burst, holding requests; each worker while it generates.
func TestGracefulShutdown(t *testing.T) {
	h := start(t, options{})
	l := h.Ledger()
	names := []string{dispatcherName, worker1Name, worker2Name, optimizerName}
	stop := func(round int) {
		name := names[round-1]
		switch name {
		case dispatcherName:
			// It hands back what it took and has not batched yet.
			burst(l, "graceful burst", 4)
			natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if heldRequests(t, h) == 0 {
					return errors.New("the dispatcher holds no request")
				}
				return nil
			})
		case worker1Name, worker2Name:
			// It finishes (or hands back) the generations it runs.
			waitGenerating(t, h, name)
		}
		if err := h.Stop(name); err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want a clean exit", name, err)
		}
		time.Sleep(time.Second)
		h.Restart(name)
	}
	underLoadOn(t, h, l, "graceful shutdown", stop, stop, stop, stop)
}
