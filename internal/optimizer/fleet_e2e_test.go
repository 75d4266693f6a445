package optimizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/testmodel"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

const (
	tiny = "herd-tiny"
	slow = "herd-slow"
)

// startOllama starts a managed `ollama serve` with both generated models
// for one test. Without the pinned binary the test is skipped (or fails
// when HERD_REQUIRE_OLLAMA is set: harness.Ollama).
func startOllama(t *testing.T, parallel int) *managed.Instance {
	t.Helper()
	cfg := managed.DefaultConfig()
	cfg.Dir, cfg.NumParallel = t.TempDir(), parallel
	cfg.TestModels = []string{testmodel.Tiny.Name, testmodel.Slow.Name}
	inst := harness.Ollama(t, cfg)
	ollamas.Store(t.Name(), ollamaAt{dir: cfg.Dir, url: inst.URL()})
	return inst
}

// ollamaAt is where a test's managed Ollama keeps its state and listens.
type ollamaAt struct{ dir, url string }

// ollamas holds each test's managed Ollama by test name, for tests that
// add a model whose blob they break.
var ollamas sync.Map

// seenCall is one generate call the worker made, as the proxy saw it.
type seenCall struct {
	model      string
	numThread  int
	keepAlive  *api.Duration
	start, end time.Time
	// ok is set when Ollama answered 200 and the worker read it all.
	ok bool
}

// statusWriter keeps the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// callProxy is a loopback proxy between the worker and Ollama that
// records each generate call and how many of a model's calls were in
// flight at once.
type callProxy struct {
	URL string
	// mu guards everything below.
	mu       sync.Mutex
	calls    []*seenCall
	inflight map[string]int
	peak     map[string]int
}

func newCallProxy(t *testing.T, target string) *callProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &callProxy{inflight: map[string]int{}, peak: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/generate" {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req api.GenerateRequest
		_ = json.Unmarshal(body, &req)
		c := &seenCall{model: req.Model, keepAlive: req.KeepAlive, start: time.Now()}
		if n, ok := req.Options["num_thread"].(float64); ok {
			c.numThread = int(n)
		}
		p.mu.Lock()
		p.calls = append(p.calls, c)
		key := fmt.Sprintf("%s/%d", c.model, c.numThread)
		p.inflight[key]++
		p.peak[key] = max(p.peak[key], p.inflight[key])
		p.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(sw, r)
		p.mu.Lock()
		p.inflight[key]--
		c.end = time.Now()
		c.ok = sw.status == http.StatusOK && r.Context().Err() == nil
		p.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// logCalls logs model's calls: when they started and how long they took.
func (p *callProxy) logCalls(t *testing.T, model string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for _, c := range p.calls {
		if c.model != model {
			continue
		}
		if first.IsZero() {
			first = c.start
		}
		took := "running"
		if !c.end.IsZero() {
			took = c.end.Sub(c.start).Round(time.Millisecond).String()
			if c.ok {
				took += " answered"
			}
		}
		t.Logf("%s call at +%v num_thread %d: %s", model, c.start.Sub(first).Round(time.Millisecond), c.numThread, took)
	}
}

// resetPeak starts a new measure of the calls in flight at once (per
// model and num_thread).
func (p *callProxy) resetPeak() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for m, n := range p.inflight {
		p.peak[m] = n
	}
}

// peakOf returns the most calls of model with num_thread threads in
// flight at once since the last resetPeak.
func (p *callProxy) peakOf(model string, threads int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak[fmt.Sprintf("%s/%d", model, threads)]
}

// overlapOK returns the most calls of model with num_thread threads that
// Ollama answered in full and that ran at the same time.
func (p *callProxy) overlapOK(model string, threads int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	most := 0
	for _, a := range p.calls {
		if a.model != model || a.numThread != threads || !a.ok {
			continue
		}
		n := 0
		for _, b := range p.calls {
			if b.model == model && b.numThread == threads && b.ok && !b.start.After(a.start) && b.end.After(a.start) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// last returns a copy of model's latest call started after since.
func (p *callProxy) last(model string, since time.Time) (seenCall, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.calls) - 1; i >= 0; i-- {
		if c := p.calls[i]; c.model == model && c.start.After(since) {
			return *c, true
		}
	}
	return seenCall{}, false
}

// gauge returns the value of a gauge (or counter) family's series with
// label model (its only series when model is ""), or -1 when there is
// none.
func gauge(t *testing.T, reg *prometheus.Registry, name, model string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if model == "" {
				return m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" && l.GetValue() == model {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// waitGauge polls until gauge(name, model) is want.
func waitGauge(t *testing.T, reg *prometheus.Registry, name, model string, want float64) {
	t.Helper()
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if g := gauge(t, reg, name, model); g != want {
			return fmt.Errorf("%s{%s} = %v, want %v", name, model, g, want)
		}
		return nil
	})
}

// realStack is NATS, a dispatcher, one worker on a real Ollama behind a
// proxy, and an optimizer.
type realStack struct {
	srv    *natstest.Server
	kv     jetstream.KeyValue
	proxy  *callProxy
	ollama *api.Client // direct
	c      *client.Client
	wreg   *prometheus.Registry
	oreg   *prometheus.Registry
	opt    *Service
	events *eventLog
}

// eventLog records the messages on herd.events.>.
type eventLog struct {
	mu  sync.Mutex
	got map[string][][]byte
}

func recordEvents(t *testing.T, nc *nats.Conn) *eventLog {
	t.Helper()
	l := &eventLog{got: map[string][][]byte{}}
	sub, err := nc.Subscribe(wire.EventsPrefix+".>", func(m *nats.Msg) {
		l.mu.Lock()
		l.got[m.Subject] = append(l.got[m.Subject], m.Data)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

// wait polls until something was announced on subject and returns the
// latest message there.
func (l *eventLog) wait(t *testing.T, subject string) []byte {
	t.Helper()
	var data []byte
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		var err error
		data, err = l.latest(subject)
		return err
	})
	return data
}

// latest returns the last message on subject, or an error.
func (l *eventLog) latest(subject string) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := l.got[subject]
	if len(ms) == 0 {
		return nil, fmt.Errorf("nothing announced on %s", subject)
	}
	return ms[len(ms)-1], nil
}

func startRealStack(t *testing.T, parallel int, ocfg Config, wcfg func(*worker.Config)) *realStack {
	t.Helper()
	inst := startOllama(t, parallel)
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 30 * time.Second})
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	connect := func() *nats.Conn { nc, _ := srv.Connect(t); return nc }
	s := &realStack{srv: srv, proxy: newCallProxy(t, inst.URL()), wreg: prometheus.NewRegistry(), oreg: prometheus.NewRegistry()}
	u, _ := url.Parse(inst.URL())
	s.ollama = api.NewClient(u, http.DefaultClient)
	s.events = recordEvents(t, connect())

	var err error
	s.opt, err = New(t.Context(), ocfg, connect(), log, s.oreg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s.opt.Run)
	d, err := dispatcher.New(t.Context(), dispatcher.DefaultConfig(), connect(), log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, d.Run)
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.Heartbeat = "w1", 50*time.Millisecond, 100*time.Millisecond
	wc.Models = []string{tiny, slow}
	wc.NumCtx = map[string]int{tiny: 2048, slow: 2048}
	wc.Warm = []string{tiny, slow} // loaded at start, as priority models are
	if wcfg != nil {
		wcfg(&wc)
	}
	oc, err := ollama.NewClient(s.proxy.URL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(t.Context(), wc, connect(), oc, defs, log, s.wreg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, w.Run)
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if len(d.Models()) < 2 {
			return errors.New("the worker has not registered both models")
		}
		return nil
	})
	if s.c, err = client.New(connect()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.c.Close() })
	_, js := srv.Connect(t)
	if s.kv, err = js.KeyValue(t.Context(), wire.BucketControl); err != nil {
		t.Fatal(err)
	}
	return s
}

// ask runs one generation of n tokens through herd.
func (s *realStack) ask(ctx context.Context, model, prompt string, n int) error {
	_, _, err := s.c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: prompt, Options: map[string]any{"num_predict": n}})
	return err
}

// budget returns the allocation in herd_control.
func (s *realStack) budget(t *testing.T) (control.Budget, error) {
	var b control.Budget
	e, err := s.kv.Get(t.Context(), control.BudgetKey)
	if err != nil {
		return b, err
	}
	return b, json.Unmarshal(e.Value(), &b)
}

// waitBudget polls until the allocation gives slow want slots.
func (s *realStack) waitBudget(t *testing.T, want int, total time.Duration) control.Budget {
	t.Helper()
	var b control.Budget
	natstest.CheckFor(t, total, 20*time.Millisecond, func() error {
		var err error
		if b, err = s.budget(t); err != nil {
			return err
		}
		if b.Total != 4 || b.Slots[slow] != want || b.Slots[tiny] != 4-want {
			return fmt.Errorf("allocation %v of %d (%s), want %s %d of 4", b.Slots, b.Total, b.Reason, slow, want)
		}
		return nil
	})
	return b
}

// TestBudgetFollowsBurst: on a real Ollama, a worker with 4 slots and 2
// cores serves herd-tiny and herd-slow. The optimizer shares the slots
// 2/2 (1 core each); a burst on herd-slow moves the idle herd-tiny's slots
// (min_slots 0) and its core to it — in herd_control, on
// herd.events.budget.<model>, in the worker's metrics, and in what the
// worker sends Ollama: 4 calls at once with num_thread 2, answered in
// parallel — and after the burst the slots go back.
//
// num_thread stays within the machine's cores: a runner given more threads
// than cores (3 on this 2-core machine) answered nothing within a minute.
func TestBudgetFollowsBurst(t *testing.T) {
	ocfg := testConfig()
	ocfg.Tick = 100 * time.Millisecond
	ocfg.WorkerTimeout = 5 * time.Second
	ocfg.Budget = policy.BudgetConfig{Persist: 2, Hold: time.Second, MaxMoves: 2, MinQueueAge: 100 * time.Millisecond, MinSlots: 0}
	ocfg.Scale = policy.ScaleConfig{MinInstances: 1, MaxInstances: 4, TargetUtilization: 0.75, UpAfter: 2, DownAfter: 3, DownHold: time.Second}
	s := startRealStack(t, 4, ocfg, func(c *worker.Config) {
		c.Slots, c.ReservedHighSlots, c.CPUBudget = 4, 0, 2
		c.Memory = func() (int64, int64, error) { return 1 << 20, 1 << 30, nil }
	})

	t.Cleanup(func() {
		if t.Failed() {
			s.proxy.logCalls(t, slow)
		}
	})
	start := time.Now()
	b := s.waitBudget(t, 2, 10*time.Second)
	t.Logf("before: %v of %d: %s", b.Slots, b.Total, b.Reason)
	wantWorker := func(slots, cores float64) {
		t.Helper()
		natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			gs, gc := gauge(t, s.wreg, "herd_worker_model_slots", slow), gauge(t, s.wreg, "herd_worker_model_cpu_budget_cores", slow)
			if gs != slots || gc != cores {
				return fmt.Errorf("worker metrics for %s: %v slots, %v cores; want %v, %v", slow, gs, gc, slots, cores)
			}
			return nil
		})
	}
	wantWorker(2, 1)
	if g := gauge(t, s.oreg, "herd_optimizer_budget_slots", slow); g != 2 {
		t.Errorf("herd_optimizer_budget_slots{%s} = %v, want 2", slow, g)
	}

	// The burst: 8 herd-slow requests in flight until the slot has moved.
	ctx, stop := context.WithCancel(t.Context())
	var burst sync.WaitGroup
	var answered atomic.Int64
	for i := range 8 {
		burst.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				if err := s.ask(ctx, slow, fmt.Sprintf("burst %d %d", i, n), 4); err == nil {
					answered.Add(1)
				}
			}
		})
	}
	burstAt := time.Now()
	b = s.waitBudget(t, 4, 60*time.Second)
	moved := time.Since(burstAt)
	t.Logf("during: %v of %d after %v: %s", b.Slots, b.Total, moved.Round(time.Millisecond), b.Reason)
	if len(b.Moves) == 0 || b.Moves[len(b.Moves)-1] != (control.Move{From: tiny, To: slow}) {
		t.Errorf("moves %v, want from %s to %s", b.Moves, tiny, slow)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		data, err := s.events.latest(EventSubject(policy.KindBudget, slow))
		if err != nil {
			return err
		}
		if ev := (control.Budget{}); json.Unmarshal(data, &ev) != nil || ev.Slots[slow] != 4 {
			return fmt.Errorf("announced %s, want %s with 4 slots", data, slow)
		}
		return nil
	})
	wantWorker(4, 2)
	// Applied: the worker now runs 4 herd-slow calls at once, all with
	// num_thread 2 (Ollama reloads the model for the new num_thread once
	// the calls started before the move have ended). On a loaded machine
	// the allocation may pass through 3 slots (1.5 cores: num_thread 1).
	s.proxy.resetPeak()
	appliedAt := time.Now()
	natstest.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		c, ok := s.proxy.last(slow, appliedAt)
		if !ok || c.numThread != 2 {
			return fmt.Errorf("latest %s call %+v, want num_thread 2", slow, c)
		}
		if p := s.proxy.overlapOK(slow, 2); p != 4 {
			return fmt.Errorf("%d answered %s calls with num_thread 2 ran at once, want 4", p, slow)
		}
		if p := s.proxy.peakOf(slow, 2); p > 4 {
			return fmt.Errorf("%d %s calls with num_thread 2 at once, want at most 4", p, slow)
		}
		return nil
	})
	t.Logf("4 answered %s calls with num_thread 2 ran at once, %v after the move", slow, time.Since(appliedAt).Round(time.Millisecond))
	stop()
	burst.Wait()
	t.Logf("burst: %d answers in %v", answered.Load(), time.Since(burstAt).Round(time.Millisecond))

	// After the burst the slot goes back.
	endAt := time.Now()
	b = s.waitBudget(t, 2, 60*time.Second)
	t.Logf("after: %v of %d, %v after the burst: %s", b.Slots, b.Total, time.Since(endAt).Round(time.Millisecond), b.Reason)
	wantWorker(2, 1)
	// The recommended instances, for an external autoscaler: in
	// herd_control and as a gauge.
	var inst control.Instances
	if e, err := s.kv.Get(t.Context(), control.InstancesKey); err != nil || json.Unmarshal(e.Value(), &inst) != nil || inst.Recommended < 1 {
		t.Errorf("instances decision %+v: %v", inst, err)
	} else if g := gauge(t, s.oreg, "herd_optimizer_recommended_instances", ""); g != float64(inst.Recommended) {
		t.Errorf("herd_optimizer_recommended_instances = %v, want %d", g, inst.Recommended)
	} else {
		t.Logf("instances: %d recommended (%s)", inst.Recommended, inst.Reason)
	}
	s.proxy.logCalls(t, slow)
	if d := s.opt.Decisions(); d.Budget.Slots[slow] != 2 {
		t.Errorf("Decisions().Budget = %+v", d.Budget)
	}
	t.Logf("whole test after Ollama start: %v", time.Since(start).Round(time.Millisecond))
}

// TestWarmthEndToEnd: on a real Ollama, the optimizer sets herd-tiny's
// keep_alive from the gaps between its requests; the worker sends it with
// the next calls (seen at the proxy, and in Ollama's expires_at). Then the
// worker's host reports memory above the threshold (a fake reader) and the
// idle herd-slow is unloaded: ListRunning no longer shows it.
func TestWarmthEndToEnd(t *testing.T) {
	const keep = 42 * time.Second
	ocfg := testConfig()
	ocfg.Tick = 100 * time.Millisecond
	ocfg.WorkerTimeout = 5 * time.Second
	// Every choice is clamped to 42s, so the decision is known in advance.
	ocfg.Warmth.MinGaps, ocfg.Warmth.MinKeepAlive, ocfg.Warmth.MaxKeepAlive = 3, keep, keep
	ocfg.Warmth.MinIdle = 300 * time.Millisecond
	var used atomic.Int64
	const total = int64(1 << 30)
	used.Store(total / 10)
	s := startRealStack(t, 2, ocfg, func(c *worker.Config) {
		c.Slots, c.CPUBudget = 2, 1
		c.Memory = func() (int64, int64, error) { return used.Load(), total, nil }
	})
	start := time.Now()

	// herd-slow runs once (loaded, then idle); herd-tiny gets a few
	// requests, enough gaps for a keep_alive decision.
	if err := s.ask(t.Context(), slow, "load me", 1); err != nil {
		t.Fatal(err)
	}
	var ka control.KeepAlive
	i := 0
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if err := s.ask(t.Context(), tiny, fmt.Sprintf("gap %d", i), 1); err != nil {
			return err
		}
		i++
		e, err := s.kv.Get(t.Context(), control.KeepAliveKey(tiny))
		if err != nil {
			return fmt.Errorf("no keep_alive decision after %d requests: %w", i, err)
		}
		return json.Unmarshal(e.Value(), &ka)
	})
	if ka.KeepAlive != keep || ka.Reason == "" {
		t.Fatalf("decision %+v, want keep_alive %v with a reason", ka, keep)
	}
	t.Logf("keep_alive decision after %d requests: %s", i, ka.Reason)
	s.events.wait(t, EventSubject(policy.KindKeepAlive, tiny))
	waitGauge(t, s.oreg, "herd_optimizer_keep_alive_seconds", tiny, keep.Seconds())
	// Applied: the next call carries it, and Ollama keeps the model for it.
	var sent time.Time
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		sent = time.Now()
		if err := s.ask(t.Context(), tiny, fmt.Sprintf("after %d", i), 1); err != nil {
			return err
		}
		i++
		c, ok := s.proxy.last(tiny, sent)
		if !ok || c.keepAlive == nil || c.keepAlive.Duration != keep {
			return fmt.Errorf("latest %s call carried keep_alive %v, want %v", tiny, c.keepAlive, keep)
		}
		return nil
	})
	waitGauge(t, s.wreg, "herd_worker_model_keep_alive_seconds", tiny, keep.Seconds())
	ps, err := s.ollama.ListRunning(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]api.ProcessModelResponse{}
	for _, m := range ps.Models {
		loaded[m.Model] = m
		loaded[m.Name] = m
	}
	m, ok := loaded[tiny+":latest"]
	if !ok {
		t.Fatalf("%s not loaded: %+v", tiny, ps.Models)
	}
	if left := time.Until(m.ExpiresAt); left < keep-10*time.Second || left > keep+time.Second {
		t.Errorf("%s expires in %v, want about %v", tiny, left, keep)
	}
	t.Logf("ps: %s expires in %v", tiny, time.Until(m.ExpiresAt).Round(time.Second))
	if _, ok := loaded[slow+":latest"]; !ok {
		t.Fatalf("%s not loaded before the memory pressure: %+v", slow, ps.Models)
	}

	// Memory pressure: idle models are unloaded, least recently used first.
	used.Store(total * 9 / 10)
	pressure := time.Now()
	var u control.Unload
	natstest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		e, err := s.kv.Get(t.Context(), control.UnloadKey("w1"))
		if err != nil {
			return err
		}
		return json.Unmarshal(e.Value(), &u)
	})
	if len(u.Models) == 0 || u.Models[0] != slow {
		t.Fatalf("unload decision %+v, want %s first (least recently used)", u, slow)
	}
	t.Logf("unload decision %v after the pressure: %s", time.Since(pressure).Round(time.Millisecond), u.Reason)
	s.events.wait(t, EventSubject(policy.KindUnload, slow))
	natstest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		ps, err := s.ollama.ListRunning(t.Context())
		if err != nil {
			return err
		}
		for _, m := range ps.Models {
			if m.Model == slow+":latest" || m.Name == slow+":latest" {
				return fmt.Errorf("%s still loaded", slow)
			}
		}
		return nil
	})
	t.Logf("%s unloaded %v after the pressure; whole test after Ollama start %v", slow,
		time.Since(pressure).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	waitGauge(t, s.wreg, "herd_worker_unloads_total", slow, 1)
	waitGauge(t, s.oreg, "herd_optimizer_unloads_total", slow, 1)
}
