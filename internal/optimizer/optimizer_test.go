package optimizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// testConfig opens after 3 failures in a row and half-opens 300ms later.
func testConfig() Config {
	c := DefaultConfig()
	c.Breaker = breaker.Config{Window: 5 * time.Second, MinRequests: 5, ErrorRate: 0.5, ConsecutiveFailures: 3,
		CoolDown: 300 * time.Millisecond, HalfOpenProbes: 2, ProbeTimeout: 10 * time.Second}
	c.Tick = 20 * time.Millisecond
	return c
}

// startService starts a Service on nc until the test ends.
func startService(t *testing.T, nc *nats.Conn, cfg Config, reg prometheus.Registerer) *Service {
	t.Helper()
	s, err := New(t.Context(), cfg, nc, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

// breakerIn returns model's decision in herd_control.
func breakerIn(ctx context.Context, kv jetstream.KeyValue, model string) (control.Breaker, error) {
	var b control.Breaker
	e, err := kv.Get(ctx, control.BreakerKey(model))
	if err != nil {
		return b, err
	}
	return b, json.Unmarshal(e.Value(), &b)
}

// wantState polls until model's decision has state.
func wantState(t *testing.T, kv jetstream.KeyValue, model, state string, total time.Duration) control.Breaker {
	t.Helper()
	var b control.Breaker
	natstest.CheckFor(t, total, 10*time.Millisecond, func() error {
		var err error
		if b, err = breakerIn(t.Context(), kv, model); err != nil {
			return err
		}
		if b.State != state {
			return fmt.Errorf("%s breaker is %s (%s), want %s", model, b.State, b.Reason, state)
		}
		return nil
	})
	return b
}

// announcements collects the decisions published on herd.events.breaker.>.
type announcements struct {
	mu  sync.Mutex
	got []control.Breaker
}

func (a *announcements) has(model, state string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.got {
		if b.Model == model && b.State == state {
			return nil
		}
	}
	return fmt.Errorf("no %s %s announced in %+v", model, state, a.got)
}

func listen(t *testing.T, nc *nats.Conn) *announcements {
	t.Helper()
	a := &announcements{}
	sub, err := nc.Subscribe(wire.EventsPrefix+".breaker.>", func(m *nats.Msg) {
		var b control.Breaker
		if json.Unmarshal(m.Data, &b) == nil {
			a.mu.Lock()
			a.got = append(a.got, b)
			a.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBreakerOpensAndCloses(t *testing.T) {
	nc, _, kv := startControl(t)
	cfg := testConfig()
	cfg.Fallbacks = []Fallback{{Model: "big", Fallback: "tiny"}}
	reg := prometheus.NewRegistry()
	s := startService(t, nc, cfg, reg)
	ann := listen(t, nc)
	pub, err := events.NewPublisher(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	call := func(model string, ok bool, code wire.Code) {
		pub.Call(&events.Call{At: time.Now(), Model: model, Op: "generate", Worker: "w1", OK: ok, Code: string(code)})
	}

	// The caller's bad input is not the model's failure.
	for range 5 {
		call("tiny", false, wire.CodeInvalidRequest)
		call("tiny", true, "")
	}
	for range 4 {
		call("big", false, wire.CodeBackendUnavailable)
	}
	b := wantState(t, kv, "big", control.Open, 5*time.Second)
	if b.Reason != string(breaker.ReasonConsecutiveFailures) || b.Numbers["failures"] < 3 || b.Numbers["consecutive"] < 3 ||
		b.Fallback != "tiny" || b.RetryAfter != cfg.Breaker.CoolDown {
		t.Errorf("open decision %+v", b)
	}
	natstest.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error { return ann.has("big", control.Open) })
	if _, err := breakerIn(t.Context(), kv, "tiny"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("tiny has a breaker decision: %v", err)
	}
	if got := s.set.State("tiny", time.Now()); got != breaker.Closed {
		t.Errorf("tiny breaker %v", got)
	}
	if got := testutil.ToFloat64(s.m.breakerState.WithLabelValues("big")); got != 2 {
		t.Errorf("big state gauge %v, want 2 while open", got)
	}

	// After the cool-down the timer half-opens it; successful probes close it.
	b = wantState(t, kv, "big", control.HalfOpen, 5*time.Second)
	if b.Reason != string(breaker.ReasonCoolDown) {
		t.Errorf("half-open decision %+v", b)
	}
	call("big", true, "")
	call("big", true, "")
	b = wantState(t, kv, "big", control.Closed, 5*time.Second)
	if b.Reason != string(breaker.ReasonProbesSucceeded) || b.Numbers["requests"] != 2 {
		t.Errorf("closed decision %+v", b)
	}
	natstest.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error { return ann.has("big", control.Closed) })
	for to, want := range map[string]float64{control.Open: 1, control.HalfOpen: 1, control.Closed: 1} {
		if got := testutil.ToFloat64(s.m.decisions.WithLabelValues("breaker", to)); got != want {
			t.Errorf("decisions to %s: %v, want %v", to, got, want)
		}
	}
	if got := testutil.ToFloat64(s.m.breakerState.WithLabelValues("big")); got != 0 {
		t.Errorf("big state gauge %v, want 0 when closed", got)
	}
}

// TestRestartResetsOpenBreakers: a decision left open by an earlier
// optimizer is closed at start, so the model is not rejected for ever.
func TestRestartResetsOpenBreakers(t *testing.T) {
	nc, _, kv := startControl(t)
	old := control.Breaker{Model: "big", State: control.Open, Reason: "consecutive_failures", At: time.Now()}
	if _, err := kv.Put(t.Context(), control.BreakerKey("big"), old.Marshal()); err != nil {
		t.Fatal(err)
	}
	startService(t, nc, testConfig(), nil)
	if b := wantState(t, kv, "big", control.Closed, 5*time.Second); b.Reason != "optimizer_restarted" {
		t.Errorf("reset decision %+v", b)
	}
}

func TestCallOutcome(t *testing.T) {
	for _, tc := range []struct {
		ok         bool
		code       wire.Code
		wantOK     bool
		wantCounts bool
	}{
		{true, "", true, true},
		{false, wire.CodeBackendUnavailable, false, true},
		{false, wire.CodeInternal, false, true},
		{false, wire.CodeModelNotFound, false, true},
		{false, wire.CodeInvalidRequest, false, false},
	} {
		t.Run(string(tc.code), func(t *testing.T) {
			ok, counts := CallOutcome(events.Call{OK: tc.ok, Code: string(tc.code)})
			if ok != tc.wantOK || counts != tc.wantCounts {
				t.Errorf("CallOutcome = %v, %v; want %v, %v", ok, counts, tc.wantOK, tc.wantCounts)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"self fallback":  func(c *Config) { c.Fallbacks = []Fallback{{Model: "a", Fallback: "a"}} },
		"empty fallback": func(c *Config) { c.Fallbacks = []Fallback{{Model: "a"}} },
		"twice":          func(c *Config) { c.Fallbacks = []Fallback{{"a", "b"}, {"a", "c"}} },
		"tick":           func(c *Config) { c.Tick = 0 },
		"breaker":        func(c *Config) { c.Breaker.CoolDown = 0 },
		"window":         func(c *Config) { c.Window.Buckets = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			mut(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestPerformanceReport(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	pub, err := events.NewPublisher(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// big, normal: 10 served by a worker in 100..1000 ms, one of them failed;
	// big, high: 2 cache hits; tiny: one truncated prompt, one breaker_open.
	for i := range 10 {
		e := &events.Request{At: now.Add(-time.Duration(i) * time.Second), ID: fmt.Sprint("b", i), Model: "big",
			Priority: "normal", Status: 200, Cache: wire.CacheMiss, TotalMs: int64(100 * (i + 1)), QueueMs: 10,
			OllamaMs: 50, EvalTok: 10, PromptTok: 20, NumCtx: 2048}
		if i == 9 {
			e.Status, e.Code, e.Cache = 503, string(wire.CodeBackendUnavailable), ""
		}
		pub.Request(e)
	}
	for i := range 2 {
		pub.Request(&events.Request{At: now, ID: fmt.Sprint("h", i), Model: "big", Priority: "high", Status: 200,
			Cache: wire.CacheHit, TotalMs: 1, Dispatcher: true})
	}
	pub.Request(&events.Request{At: now, ID: "t1", Model: "tiny", Priority: "low", Status: 200, Cache: wire.CacheMiss,
		TotalMs: 30, OllamaMs: 20, PromptTok: 2046, NumCtx: 2048, EvalTok: 5})
	pub.Request(&events.Request{At: now, ID: "t2", Model: "tiny", Priority: "low", Status: 503,
		Code: string(wire.CodeBreakerOpen), Dispatcher: true})
	pub.Call(&events.Call{At: now, Model: "big", OK: true}) // not a request: not in the report
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if pub.Sent() != 15 || pub.Dropped() != 0 {
			return fmt.Errorf("sent %d, dropped %d", pub.Sent(), pub.Dropped())
		}
		st, err := js.Stream(t.Context(), wire.StreamMetrics)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Msgs; n < 15 {
			return fmt.Errorf("%d messages stored", n)
		}
		return nil
	})

	r, err := Performance(t.Context(), js, 5*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 14 || r.Late != 0 {
		t.Errorf("events %d, late %d; want 14, 0", r.Events, r.Late)
	}
	rows := map[string]Row{}
	for _, x := range r.Rows {
		rows[x.Model+"/"+x.Priority] = x
	}
	bigNormal, bigAll, tiny := rows["big/normal"], rows["big/all"], rows["tiny/all"]
	if bigNormal.Count != 10 || bigNormal.Errors != 1 || bigNormal.ErrorRate != 0.1 {
		t.Errorf("big/normal %+v", bigNormal)
	}
	if bigNormal.P50 < 495 || bigNormal.P50 > 505 || bigNormal.P99 < 990 || bigNormal.P99 > 1010 {
		t.Errorf("big/normal latency p50 %v p99 %v, want 500 and 1000", bigNormal.P50, bigNormal.P99)
	}
	if bigAll.Count != 12 || bigAll.CacheHitRatio != 2.0/11 {
		t.Errorf("big/all %+v, want 12 requests and 2 hits of 11", bigAll)
	}
	if tiny.Count != 2 || tiny.Rejected != 1 || tiny.Truncated != 1 || tiny.Errors != 0 {
		t.Errorf("tiny/all %+v", tiny)
	}
	if len(r.Rows) != 5 || r.Rows[0].Model != "big" || r.Rows[0].Priority != "all" {
		t.Errorf("rows %+v", r.Rows)
	}
	var text, js2 strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"14 request events", "big", "tiny", "p95 ms", "10.0%"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var back Report
	if err := json.Unmarshal([]byte(js2.String()), &back); err != nil || len(back.Rows) != 5 {
		t.Errorf("JSON report %v: %s", err, js2.String())
	}
	t.Log("\n" + text.String())

	// An empty window is a report too.
	r, err = Performance(t.Context(), js, time.Second, time.Now().Add(time.Hour))
	if err != nil || len(r.Rows) != 0 {
		t.Errorf("empty window: %+v %v", r, err)
	}
}

// startControl starts a provisioned server and returns a connection, its
// JetStream and the herd_control bucket.
func startControl(t *testing.T) (*nats.Conn, jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, kv
}
