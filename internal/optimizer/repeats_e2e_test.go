package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestPoisonRequestKeepsBreakerClosed: one request that Ollama fails on
// every attempt (3) of every delivery (5) is one failure for its model's
// breaker, so the breaker stays closed and the model's other requests go
// on; distinct requests that all fail (a missing model) still open their
// model's breaker, and so do the unnamed failures of older workers.
func TestPoisonRequestKeepsBreakerClosed(t *testing.T) {
	nc, _, kv := startControl(t)
	cfg := testConfig() // opens on 3 failures in a row, or half of at least 5
	s := startService(t, nc, cfg, prometheus.NewRegistry())
	pub, err := events.NewPublisher(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	call := func(model, request string, ok bool, code wire.Code) {
		pub.Call(&events.Call{At: time.Now(), Model: model, Op: "generate", Worker: "w1", OK: ok, Code: string(code), Request: request})
	}

	// The poison request: 3 attempts in a row per delivery, 5 deliveries,
	// and between them other requests for the model succeed. Counted
	// every time, 3 in a row would open the breaker on the first delivery.
	const deliveries, attempts, others = 5, 3, 2
	for d := range deliveries {
		for range attempts {
			call("big", "poison", false, wire.CodeBackendUnavailable)
		}
		for j := range others {
			call("big", fmt.Sprintf("fine-%d-%d", d, j), true, "")
		}
	}
	want := 1 + deliveries*others // one failure, every success
	var st breaker.Status
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, b := range s.Breakers(time.Now()) {
			if b.Model == "big" {
				st = b
			}
		}
		if st.State != breaker.Closed || st.Numbers.Requests < want {
			return fmt.Errorf("big breaker %s with %+v, want closed with %d outcomes", st.State, st.Numbers, want)
		}
		return nil
	})
	if st.Numbers.Failures != 1 || st.Numbers.Requests != want || st.Numbers.Consecutive != 0 {
		t.Errorf("big breaker numbers %+v; want 1 failure of %d outcomes", st.Numbers, want)
	}
	if n := testutil.ToFloat64(s.m.repeats.WithLabelValues("big")); n != deliveries*attempts-1 {
		t.Errorf("herd_optimizer_breaker_repeated_failures_total{model=big} = %v, want %d", n, deliveries*attempts-1)
	}
	if _, err := breakerIn(t.Context(), kv, "big"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("big has a breaker decision after a poison request: %v", err)
	}

	// A missing model: every request fails once (model_not_found is not
	// retried); three distinct ones open the breaker as before.
	for i := range 3 {
		call("lost", fmt.Sprint("lost-", i), false, wire.CodeModelNotFound)
	}
	if b := wantState(t, kv, "lost", control.Open, 5*time.Second); b.Reason != string(breaker.ReasonConsecutiveFailures) || b.Numbers["failures"] != 3 {
		t.Errorf("lost open decision %+v", b)
	}

	// Older workers name no request: each failure counts, as before.
	for range 3 {
		call("old", "", false, wire.CodeBackendUnavailable)
	}
	if b := wantState(t, kv, "old", control.Open, 5*time.Second); b.Numbers["failures"] != 3 {
		t.Errorf("old open decision %+v", b)
	}
	if got := s.set.State("big", time.Now()); got != breaker.Closed {
		t.Errorf("big breaker %v at the end, want closed", got)
	}
}

// TestWorkerNamesRequestInCallEvents: a real worker calling a fake Ollama
// that fails every call names the request in each attempt's call event,
// so the request's 3 attempts on each of its 2 deliveries are one failure
// for the optimizer, and its model's breaker stays closed.
func TestWorkerNamesRequestInCallEvents(t *testing.T) {
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 5 * time.Second, MaxDeliver: 2})
	fake := ollamatest.New(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	nc, js := srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []events.Call
	sub, err := nc.Subscribe(callSubjects+">", func(m *nats.Msg) {
		var e events.Call
		if json.Unmarshal(m.Data, &e) == nil {
			mu.Lock()
			calls = append(calls, e)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s := startService(t, nc, testConfig(), prometheus.NewRegistry())
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.RetryBackoff = "w1", 50*time.Millisecond, 20*time.Millisecond
	c := startHerd(t, srv, defs, fake.URL, dispatcher.DefaultConfig(), wc, log)

	fake.SetFailure("big", 500, "runner crashed on this prompt")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, _, err = c.Generate(ctx, &api.GenerateRequest{Model: "big", Prompt: "poison"})
	var he *client.Error
	if !errors.As(err, &he) || he.Code != client.CodeBackendUnavailable || he.RequestID == "" {
		t.Fatalf("poison answered %v, want 503 backend_unavailable after its last delivery", err)
	}
	want := 2 * wc.Attempts
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		seen := len(calls)
		mu.Unlock()
		if got := testutil.ToFloat64(s.m.events.WithLabelValues("call")); got < float64(want) || seen < want {
			return fmt.Errorf("optimizer consumed %v call events, %d seen; want %d", got, seen, want)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != want {
		t.Errorf("%d call events, want %d (2 deliveries x %d attempts)", len(calls), want, wc.Attempts)
	}
	for _, e := range calls {
		if e.OK || e.Request != he.RequestID || e.Code != string(wire.CodeBackendUnavailable) {
			t.Errorf("call event %+v, want a failure naming request %s", e, he.RequestID)
		}
	}
	var st breaker.Status
	for _, b := range s.Breakers(time.Now()) {
		if b.Model == "big" {
			st = b
		}
	}
	if st.State != breaker.Closed || st.Numbers.Failures != 1 || st.Numbers.Requests != 1 {
		t.Errorf("big breaker %s with %+v; want closed with the poison's one failure", st.State, st.Numbers)
	}
	if _, err := breakerIn(t.Context(), kv, "big"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("big has a breaker decision after one poison request: %v", err)
	}
}
