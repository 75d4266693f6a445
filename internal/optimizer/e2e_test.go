package optimizer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// run runs f until the test ends and waits for it.
func run(t *testing.T, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// startHerd runs a dispatcher (dc) and a worker (wc) on the Ollama at
// ollamaURL until the test ends, each on its own connection to srv, waits
// until the worker has registered with the dispatcher, and returns an SDK
// client that is closed when the test ends.
func startHerd(t *testing.T, srv *natstest.Server, defs *provision.Definitions, ollamaURL string,
	dc dispatcher.Config, wc worker.Config, log *zap.Logger) *client.Client {
	t.Helper()
	connect := func() *nats.Conn { nc, _ := srv.Connect(t); return nc }
	d, err := dispatcher.New(t.Context(), dc, connect(), log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, d.Run)
	oc, err := ollama.NewClient(ollamaURL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(t.Context(), wc, connect(), oc, defs, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, w.Run)
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(d.Models()) == 0 {
			return errors.New("no worker registered")
		}
		return nil
	})
	c, err := client.New(connect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestBreakerEndToEnd: dispatcher, worker, fake Ollama and optimizer. A
// failing model's breaker opens from the workers' call events and its
// requests fail fast (or go to the fallback) while the healthy model keeps
// answering; once the model recovers the breaker half-opens, the probes
// succeed and it closes.
func TestBreakerEndToEnd(t *testing.T) {
	for _, fallback := range []string{"", "small"} {
		t.Run("fallback="+fallback, func(t *testing.T) { breakerEndToEnd(t, fallback) })
	}
}

func breakerEndToEnd(t *testing.T, fallback string) {
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 5 * time.Second})
	fake := ollamatest.New(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	connect := func() *nats.Conn { nc, _ := srv.Connect(t); return nc }

	ocfg := testConfig()
	ocfg.Breaker.CoolDown = 500 * time.Millisecond
	if fallback != "" {
		ocfg.Fallbacks = []Fallback{{Model: "big", Fallback: fallback}}
	}
	opt, err := New(t.Context(), ocfg, connect(), log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, opt.Run)
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.RetryBackoff = "w1", 50*time.Millisecond, 20*time.Millisecond
	c := startHerd(t, srv, defs, fake.URL, dispatcher.DefaultConfig(), wc, log)
	ask := func(model string, timeout time.Duration) (*api.GenerateResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		start := time.Now()
		r, _, err := c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: "are you there"})
		return r, time.Since(start), err
	}
	_, js := srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}

	fake.SetFailure("big", 500, "runner crashed")
	// Distinct requests fail (each counts once, however often it is
	// retried): the breaker opens from them.
	for i := range ocfg.Breaker.ConsecutiveFailures {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			_, _, _ = c.Generate(ctx, &api.GenerateRequest{Model: "big", Prompt: fmt.Sprint("are you there ", i)})
		}()
	}
	b := wantState(t, kv, "big", control.Open, 5*time.Second)
	t.Logf("opened: %+v", b)
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		r, took, err := ask("big", 2*time.Second)
		if fallback != "" {
			if err != nil || r.Model != fallback {
				return fmt.Errorf("got %+v %v, want the fallback's answer", r, err)
			}
			return nil
		}
		var he *client.Error
		if !errors.As(err, &he) || he.Code != client.CodeBreakerOpen || he.Status != 503 || !he.Retryable {
			return fmt.Errorf("got %v, want 503 breaker_open", err)
		}
		if took > time.Second {
			return fmt.Errorf("breaker_open took %v", took)
		}
		return nil
	})
	for range 3 {
		if r, _, err := ask("tiny", 5*time.Second); err != nil || r.Model != "tiny" {
			t.Fatalf("tiny while big is open: %+v %v", r, err)
		}
	}
	if _, err := breakerIn(t.Context(), kv, "tiny"); err == nil {
		t.Error("tiny has a breaker decision")
	}

	// Recovery: half-open after the cool-down, probes succeed, closed.
	fake.SetFailure("big", 0, "")
	wantState(t, kv, "big", control.HalfOpen, 5*time.Second)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		r, _, err := ask("big", 5*time.Second)
		if err != nil || r.Model != "big" {
			return fmt.Errorf("big after recovery: %+v %v", r, err)
		}
		b, err := breakerIn(t.Context(), kv, "big")
		if err != nil || b.State != control.Closed {
			return fmt.Errorf("big breaker %+v %v, want closed", b, err)
		}
		return nil
	})
}
