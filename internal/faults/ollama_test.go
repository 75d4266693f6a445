package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// shortAckWait is queue.ack_wait for the scenarios of this file and
// delivery_test.go: short, so that a generation outlives it several times
// and a crash-looping delivery is given up within seconds.
const shortAckWait = 3 * time.Second

// TestOllamaFaults: Ollama fails under herd the ways it does in the field,
// one scenario after the other on one stack (queue.ack_wait 3s): killed and
// restarted under load; a model it does not have; a generation several ack
// waits long; answering 503 for a while (last: the optimizer's breakers
// open on it). Every acknowledged request ends with exactly one outcome.
func TestOllamaFaults(t *testing.T) {
	h := start(t, options{AckWait: shortAckWait})

	t.Run("killed and restarted under load", func(t *testing.T) {
		var killedAt time.Time
		var restart time.Duration
		_, c := underLoad(t, h, "ollama killed", func(int) {
			killedAt = time.Now()
			h.KillOllama()
			restart = time.Since(killedAt)
		})
		cut := 0
		for _, call := range h.Proxy.Calls("/api/generate", "ollama killed") {
			if call.Start.Before(killedAt) && call.Done && call.End.After(killedAt) && call.Status != http.StatusOK {
				cut++
			}
		}
		t.Logf("Ollama back %v after SIGKILL (restarts %d); %d generations cut off", ms(restart), h.Ollama.Restarts(), cut)
		if cut == 0 {
			t.Errorf("the kill cut off no generation")
		}
		if c.Errors != 0 || c.Dead != 0 {
			t.Errorf("%d error replies and %d dead letters: every caller should have been answered after the restart", c.Errors, c.Dead)
		}
	})

	t.Run("model missing", func(t *testing.T) {
		modelMissing(t, h)
	})

	t.Run("generation longer than the ack wait", func(t *testing.T) {
		// Size the generation from herd-slow's speed here and now: 3.5
		// ack waits at the speed of a direct call (a worker's call beside
		// other work takes longer).
		rate := tokensPerSecond(t, h)
		n := min(max(int(rate*3.5*shortAckWait.Seconds()), 100), 4000)
		const prompt = "a story that outlives the ack wait"
		l := h.Ledger()
		id := l.Send(Req{Model: slowModel, Prompt: prompt, Options: map[string]any{"num_predict": n, "temperature": 0}})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		l.Check(t)
		e := l.Entry(id)
		calls := h.Proxy.Calls("/api/generate", prompt)
		var took time.Duration
		if len(calls) > 0 {
			took = calls[0].End.Sub(calls[0].Start)
		}
		t.Logf("%d tokens (herd-slow at %.0f tok/s): answered %d by %s; Ollama called %d time(s), the call took %v = %.1f ack waits",
			n, rate, e.Status, workerOf(e), len(calls), ms(took), took.Seconds()/shortAckWait.Seconds())
		if e.Status != http.StatusOK {
			t.Errorf("answered %d (%v), want 200", e.Status, e.Err)
		}
		if len(calls) != 1 || calls[0].Status != http.StatusOK {
			t.Errorf("Ollama saw %d calls for the request (%v), want exactly one, answered", len(calls), h.Proxy.Outcomes("/api/generate"))
		}
		if took < 2*shortAckWait {
			t.Errorf("the generation took %v, not clearly longer than the ack wait %v: the scenario proved nothing", took, shortAckWait)
		}
	})

	// Last: the optimizer's breakers react to the 503s, and stay open for
	// their cool-down.
	t.Run("503 for a while", func(t *testing.T) {
		const busy = 3 * time.Second
		_, c := underLoad(t, h, "ollama 503", func(int) {
			h.Proxy.Fail503(busy)
			time.Sleep(busy)
		})
		got503 := map[string]bool{}
		for _, call := range h.Proxy.Calls("/api/generate", "ollama 503") {
			if call.Injected == fault503 {
				got503[string(call.Body)] = true
			}
		}
		retried := 0
		for _, call := range h.Proxy.Calls("/api/generate", "ollama 503") {
			if got503[string(call.Body)] && call.Status == http.StatusOK {
				retried++
			}
		}
		breaker := c.ByStatus["503 "+string(wire.CodeBreakerOpen)]
		t.Logf("503 for %v: %d requests got Ollama's 503, %d of them answered by a later call; %d answered 200, %d refused at once by an open breaker (503 breaker_open, retryable)",
			busy, len(got503), retried, c.ByStatus["200"], breaker)
		if len(got503) == 0 || retried != len(got503) {
			t.Errorf("%d requests saw a 503 and %d were retried to an answer, want every one", len(got503), retried)
		}
		if c.Dead != 0 || c.ByStatus["200"]+breaker != c.Acked {
			t.Errorf("outcomes %v, %d dead letters: want each answered, or refused by the breaker", c.ByStatus, c.Dead)
		}
	})
}

// modelMissing: requests for a model Ollama does not have are answered 404
// model_not_found at once and not retried, both for a model no worker
// serves and for one deleted from Ollama while the workers serve it;
// requests for other models are answered as usual.
func modelMissing(t *testing.T, h *Harness) {
	const absent, gone = "herd-absent", "herd-gone"
	u, err := url.Parse(h.Ollama.URL())
	if err != nil {
		t.Fatal(err)
	}
	oc := api.NewClient(u, http.DefaultClient)
	ctx := t.Context()
	if err := oc.Copy(ctx, &api.CopyRequest{Source: tinyModel, Destination: gone}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = oc.Delete(context.Background(), &api.DeleteRequest{Model: gone}) })
	// The workers list it within a heartbeat (5s): herd answers it.
	c, err := client.New(h.Connect(), client.WithAgent("models"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	natstest.CheckFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		_, _, err := c.Generate(ctx, &api.GenerateRequest{Model: gone, Prompt: "are you there", Options: map[string]any{"num_predict": 1}},
			client.Cache(wire.CacheOff))
		return err
	})
	if err := oc.Delete(ctx, &api.DeleteRequest{Model: gone}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()

	l := h.Ledger()
	for i := range 3 {
		l.Send(Req{Model: gone, Prompt: fmt.Sprintf("deleted model %d", i), Options: map[string]any{"num_predict": 4}})
		l.Send(Req{Model: absent, Prompt: fmt.Sprintf("absent model %d", i), Options: map[string]any{"num_predict": 4}})
		l.Send(Req{Model: tinyModel, Prompt: fmt.Sprintf("present model %d", i), Options: map[string]any{"num_predict": 4}})
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.Wait(wctx); err != nil {
		t.Fatal(err)
	}
	counts := l.Check(t)
	var slowest time.Duration
	for _, id := range l.book.IDs() {
		e := l.Entry(id)
		took := time.Duration(0)
		if e.Meta != nil {
			took = time.Duration(e.Meta.TotalMs) * time.Millisecond
		}
		var herr *client.Error
		switch {
		case e.Req.Model == tinyModel:
			if e.Status != http.StatusOK {
				t.Errorf("%s on %s: %d (%v), want 200", e.Req.Prompt, e.Req.Model, e.Status, e.Err)
			}
		case !errors.As(e.Err, &herr) || herr.Status != http.StatusNotFound || herr.Code != wire.CodeModelNotFound || herr.Retryable:
			t.Errorf("%s on %s: %v, want 404 model_not_found, not retryable", e.Req.Prompt, e.Req.Model, e.Err)
		default:
			slowest = max(slowest, took)
		}
	}
	absentCalls := len(h.Proxy.Calls("/api/generate", absent))
	goneCalls := h.Proxy.Calls("/api/generate", "deleted model")
	t.Logf("model deleted %v before; %d requests for it and 3 for %s answered 404 model_not_found (slowest in herd %v); Ollama saw %d calls for the deleted model, %d for the absent one; %v",
		ms(time.Since(deleted)), 3, absent, slowest, len(goneCalls), absentCalls, counts)
	if absentCalls != 0 {
		t.Errorf("Ollama saw %d calls for %s, which no worker serves", absentCalls, absent)
	}
	if len(goneCalls) > 3 {
		t.Errorf("Ollama saw %d calls for 3 requests of the deleted model: retried", len(goneCalls))
	}
	if slowest > 5*time.Second {
		t.Errorf("a model_not_found answer took %v, want it at once", slowest)
	}
}

// tokensPerSecond measures herd-slow's generation speed on the shared
// Ollama, with the options the workers use (so the model is not reloaded).
func tokensPerSecond(t *testing.T, h *Harness) float64 {
	t.Helper()
	u, err := url.Parse(h.Ollama.URL())
	if err != nil {
		t.Fatal(err)
	}
	oc := api.NewClient(u, http.DefaultClient)
	stream := false
	var r api.GenerateResponse
	err = oc.Generate(t.Context(), &api.GenerateRequest{Model: slowModel, Prompt: "how fast", Stream: &stream,
		Options: map[string]any{"num_predict": 48, "num_thread": 1, "num_ctx": 2048, "temperature": 0}},
		func(g api.GenerateResponse) error { r = g; return nil })
	if err != nil || r.EvalDuration <= 0 {
		t.Fatalf("measure herd-slow: %v (%+v)", err, r.Metrics)
	}
	return float64(r.EvalCount) / r.EvalDuration.Seconds()
}

// workerOf names the worker that answered, for logs.
func workerOf(e Entry) string {
	if e.Meta == nil || e.Meta.Worker == "" {
		return "-"
	}
	return strings.TrimSpace(e.Meta.Worker)
}
