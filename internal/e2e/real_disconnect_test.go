package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestRealAgentGone: an agent that closes its connection in the middle of
// a long generation is gone for good: the worker notices, closes Ollama's
// call within seconds (not after the minute the generation would take) and
// records 499 canceled. A streaming agent's chunks reach nobody; a
// non-streaming agent's presence probes find no subscriber. Agents that
// stay connected are not disturbed.
func TestRealAgentGone(t *testing.T) {
	inst := startRealOllama(t, managed.Config{NumParallel: 2, TestModels: []string{slowModel}})
	px := newOllamaProxy(t, inst.URL())
	s := newStack(t, realStackOpts(px.URL, func(c *worker.Config) { c.Slots, c.ReservedHighSlots = 2, 0 }))
	_, js := s.srv.Connect(t)
	results, err := js.KeyValue(t.Context(), wire.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("streaming", func(t *testing.T) { streamingAgentGone(t, s, px, results) })
	t.Run("not streaming", func(t *testing.T) { nonStreamingAgentGone(t, s, px, results) })
}

// streamingAgentGone: a streaming agent leaves; its chunks reach nobody.
func streamingAgentGone(t *testing.T, s *stack, px *ollamaProxy, results jetstream.KeyValue) {
	start := func(id, prompt string, numPredict int) (*nats.Conn, *nats.Subscription) {
		t.Helper()
		nc, err := nats.Connect(s.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		inbox := nc.NewRespInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "leaver"))
		m.Data = fmt.Appendf(nil, `{"model":%q,"prompt":%q,"stream":true,"options":{"temperature":0,"num_predict":%d}}`, slowModel, prompt, numPredict)
		m.Header.Set(wire.HdrMsgID, id)
		m.Header.Set(wire.HdrReplyTo, inbox)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		return nc, sub
	}
	const gonePrompt, stayPrompt = "a very long story nobody waits for", "a story somebody reads"
	leaver, _ := start("leaver", gonePrompt, 2000) // about a minute of herd-slow
	_, staying := start("stayer", stayPrompt, 64)
	natstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		calls := px.snapshot("/api/generate", gonePrompt)
		if len(calls) != 1 || calls[0].Done || calls[0].Bytes < 500 {
			return fmt.Errorf("not streaming yet: %+v", calls)
		}
		return nil
	})
	closedAt, call := leave(t, px, leaver, gonePrompt)
	t.Logf("agent left %v into the generation; the worker closed Ollama's call %v later (%d bytes streamed)",
		ms(closedAt.Sub(call.Start)), ms(call.End.Sub(closedAt)), call.Bytes)
	checkCanceled(t, results, "leaver")

	// The agent that stayed got its whole stream.
	chunks := 0
	for {
		m, err := staying.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("staying agent after %d chunks: %v", chunks, err)
		}
		if m.Header.Get(wire.HdrStatus) != "" {
			if status(m) != 200 {
				t.Fatalf("staying agent answered %d %s", status(m), oneLine(string(m.Data)))
			}
			break
		}
		chunks++
	}
	if chunks < 32 {
		t.Errorf("staying agent got %d chunks for 64 tokens", chunks)
	}
}

// nonStreamingAgentGone: a non-streaming agent (nats.go Request on the ask
// door: its inbox is one wildcard subscription) leaves; the worker's
// presence probes on its reply subject's sibling find nobody. An SDK agent
// waiting for its answer meanwhile is probed too and gets its answer.
func nonStreamingAgentGone(t *testing.T, s *stack, px *ollamaProxy, results jetstream.KeyValue) {
	const gonePrompt, stayPrompt = "a very long story nobody waits for, not streamed", "a story somebody waits for, not streamed"
	leaver, err := nats.Connect(s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaver.Close)
	m := nats.NewMsg(wire.AskSubject(wire.Normal, "leaver"))
	m.Data = fmt.Appendf(nil, `{"model":%q,"prompt":%q,"options":{"temperature":0,"num_predict":2000}}`, slowModel, gonePrompt)
	m.Header.Set(wire.HdrMsgID, "quiet-leaver")
	go func() { _, _ = leaver.RequestMsg(m, 5*time.Minute) }()

	stayNC, err := nats.Connect(s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stayNC.Close)
	c, err := client.New(stayNC, client.WithAgent("stayer"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	type answer struct {
		r    *api.GenerateResponse
		meta *client.Meta
		err  error
	}
	stayed := make(chan answer, 1)
	go func() {
		// Several seconds of herd-slow: several probes reach it while it waits.
		r, meta, err := c.Generate(t.Context(), &api.GenerateRequest{Model: slowModel, Prompt: stayPrompt,
			Options: map[string]any{"temperature": 0, "num_predict": 100}})
		stayed <- answer{r, meta, err}
	}()

	// Leave a second into the generation, once the first probe found the
	// agent: a probe reaches its wildcard inbox only while it is there (it
	// gets nothing else before its answer). The second alone assumed the
	// worker's first round came within it; had it come after the agent
	// left, the call would not have been probed at all.
	natstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		calls := px.snapshot("/api/generate", gonePrompt)
		if len(calls) != 1 || calls[0].Done || time.Since(calls[0].Start) < time.Second {
			return fmt.Errorf("not running for a second yet: %+v", calls)
		}
		if leaver.Stats().InMsgs == 0 {
			return errors.New("no probe reached the agent yet")
		}
		return nil
	})
	closedAt, call := leave(t, px, leaver, gonePrompt)
	t.Logf("non-streaming agent left %v into the generation; the worker closed Ollama's call %v later",
		ms(closedAt.Sub(call.Start)), ms(call.End.Sub(closedAt)))
	checkCanceled(t, results, "quiet-leaver")

	select {
	case a := <-stayed:
		if a.err != nil || a.r.EvalCount < 50 || a.meta.Status != 200 {
			t.Fatalf("staying SDK agent: %v (status %v), want its whole answer", a.err, a.meta)
		}
		t.Logf("staying SDK agent answered after %dms with %d tokens", a.meta.TotalMs, a.r.EvalCount)
	case <-time.After(60 * time.Second):
		t.Fatal("staying SDK agent not answered in 60s")
	}
}

// checkCanceled waits for request id's stored outcome and wants 499.
func checkCanceled(t *testing.T, results jetstream.KeyValue, id string) {
	t.Helper()
	var stored []byte
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		e, err := results.Get(t.Context(), id)
		if err == nil {
			stored = e.Value()
		}
		return err
	})
	var o struct{ Status int }
	if err := json.Unmarshal(stored, &o); err != nil || o.Status != 499 {
		t.Errorf("herd_results[%s] = %s, want status 499", id, oneLine(string(stored)))
	}
}

// leave closes the agent's connection and waits until the worker has
// closed Ollama's call for prompt (it fails the test when the call ended
// by itself); it returns when the agent left and the call.
func leave(t *testing.T, px *ollamaProxy, agent *nats.Conn, prompt string) (time.Time, upstreamCall) {
	t.Helper()
	closedAt := time.Now()
	agent.Close()
	var call upstreamCall
	natstest.CheckFor(t, 15*time.Second, 5*time.Millisecond, func() error {
		calls := px.snapshot("/api/generate", prompt)
		if len(calls) != 1 || !calls[0].Done {
			return fmt.Errorf("Ollama's call still open %v after the agent left", time.Since(closedAt))
		}
		call = calls[0]
		return nil
	})
	if !call.WorkerGone {
		t.Fatalf("Ollama's call ended by itself, not closed by the worker")
	}
	return closedAt, call
}
