package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

func TestGenerateChatEmbed(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client(client.WithAgent("t1"))
	ctx := t.Context()
	g, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "hello there"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Response != "echo: hello there" || !g.Done {
		t.Fatalf("generate = %+v", g)
	}
	if meta.Status != 200 || meta.Cache != "miss" || meta.Worker != "w1" || meta.RequestID == "" {
		t.Fatalf("meta = %+v", meta)
	}
	ch, _, err := c.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi chat"}}})
	if err != nil || ch.Message.Content != "echo: hi chat" {
		t.Fatalf("chat = %+v, %v", ch, err)
	}
	e, _, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: []string{"a", "b"}})
	if err != nil || len(e.Embeddings) != 2 {
		t.Fatalf("embed = %+v, %v", e, err)
	}
	var chunks []string
	_, err = c.GenerateStream(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "one two three"}, func(r api.GenerateResponse) error {
		chunks = append(chunks, r.Response)
		return nil
	}, client.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 3 {
		t.Fatalf("stream chunks = %q", chunks)
	}
}

// TestRetrySameID: a caller that retries with the same request id (here a
// new process, with a new inbox) runs the request once and finds the
// answer in herd_results.
func TestRetrySameID(t *testing.T) {
	s := newStack(t, stackOpts{})
	first := s.client(client.WithAgent("a"))
	r1, m1, err := first.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "once"}, client.RequestID("fixed-id-1"))
	if err != nil {
		t.Fatal(err)
	}
	again := s.client(client.WithAgent("a"))
	r2, m2, err := again.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "once"}, client.RequestID("fixed-id-1"))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Response != r2.Response || m1.RequestID != m2.RequestID || m2.Status != 200 {
		t.Fatalf("retry got %+v %+v, first %+v %+v", r2, m2, r1, m1)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Fatalf("ollama calls = %d, want 1: a retry with the same id must not run again", n)
	}
}

// TestMetricEvents: every request's outcome is one event on
// herd.metrics.req.<model>, with what the optimizer needs; batches and
// workers report too.
func TestMetricEvents(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client(client.WithAgent("ev"))
	ctx := t.Context()
	for i := range 5 {
		if _, _, err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: fmt.Sprintf("event %d", i), Options: map[string]any{"temperature": 0}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "event 0", Options: map[string]any{"temperature": 0}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Generate(ctx, &api.GenerateRequest{Model: "nope", Prompt: "x"}); err == nil {
		t.Fatal("unknown model answered")
	}
	_, js := s.srv.Connect(t)
	var reqs []events.Request
	batched := 0
	natstest.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		reqs, batched = nil, 0
		cons, err := js.OrderedConsumer(ctx, wire.StreamMetrics, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		for {
			m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			switch {
			case strings.HasPrefix(m.Subject(), wire.MetricsPrefix+".req."):
				var e events.Request
				if err := json.Unmarshal(m.Data(), &e); err != nil {
					return err
				}
				reqs = append(reqs, e)
			case strings.HasPrefix(m.Subject(), wire.MetricsPrefix+".batch."):
				var e events.Batch
				_ = json.Unmarshal(m.Data(), &e)
				batched += e.Size
			}
		}
		if len(reqs) != 7 {
			return fmt.Errorf("%d request events, want 7", len(reqs))
		}
		return nil
	})
	by := map[string]int{}
	for _, e := range reqs {
		by[fmt.Sprintf("%d/%s", e.Status, e.Cache)]++
		if e.Status == 200 && e.Cache == "miss" && (e.EvalTok == 0 || e.Worker == "" || e.Agent != "ev" || e.Priority != "normal") {
			t.Fatalf("worker event lacks fields: %+v", e)
		}
	}
	if by["200/miss"] != 5 || by["200/hit"] != 1 || by["404/"] != 1 || batched != 5 {
		t.Fatalf("events by status/cache %v, batched %d; want 5 misses, 1 hit, 1 404, 5 batched", by, batched)
	}
}

// TestBreakerDecision: while herd_control says a model's breaker is open,
// its requests fail fast with 503 breaker_open (retryable) or, with a
// fallback, are answered by the fallback model; when it closes they run.
func TestBreakerDecision(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client()
	_, js := s.srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	set := func(b control.Breaker) {
		t.Helper()
		if _, err := kv.Put(t.Context(), control.BreakerKey(b.Model), b.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	ask := func() (*api.GenerateResponse, error) {
		r, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "big", Prompt: "are you there"})
		return r, err
	}
	set(control.Breaker{Model: "big", State: control.Open, Reason: "error rate 0.80 over 30s", RetryAfter: 10 * time.Second})
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		_, err := ask()
		var he *client.Error
		if !errors.As(err, &he) || he.Code != client.CodeBreakerOpen || he.Status != 503 || !he.Retryable {
			return fmt.Errorf("got %v, want 503 breaker_open", err)
		}
		return nil
	})
	calls := s.fake.CallsFor("generate", "big")
	set(control.Breaker{Model: "big", State: control.Open, Fallback: "small", Reason: "consecutive failures 5"})
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		r, err := ask()
		if err != nil || r.Model != "small" {
			return fmt.Errorf("got %+v %v, want the fallback's answer", r, err)
		}
		return nil
	})
	set(control.Breaker{Model: "big", State: control.Closed, Reason: "probes succeeded"})
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		r, err := ask()
		if err != nil || r.Model != "big" {
			return fmt.Errorf("got %+v %v after close", r, err)
		}
		return nil
	})
	if s.fake.CallsFor("generate", "big") <= calls {
		t.Fatal("the closed model was not called")
	}
}

// TestRequestLogs: at debug level the dispatcher's and the worker's JSON
// log lines of one request carry its id, so they can be tied together.
func TestRequestLogs(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := newStack(t, stackOpts{logger: zap.New(core)})
	c := s.client()
	_, meta, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "trace me"})
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		seen := map[string]bool{}
		for _, e := range logs.FilterField(zap.String("request_id", meta.RequestID)).All() {
			seen[e.LoggerName+" "+e.Message] = true
		}
		if !seen["dispatcher batched"] || !seen["worker answered"] {
			return fmt.Errorf("log lines with the request id: %v", seen)
		}
		return nil
	})
}
