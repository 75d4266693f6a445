package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// autoConfig is three profiles over the fake's models.
func autoConfig() policy.AutoConfig {
	return policy.AutoConfig{
		Profiles: []policy.Profile{
			{Name: "high-throughput", Agents: []string{"batch-*"}, Models: []string{"fast", "tiny"}, PriorityCeiling: wire.High, NumCtx: 1024},
			{Name: "complex-reasoning", Agents: []string{"*planner*"}, Models: []string{"deep", "mid"}, PriorityCeiling: wire.Normal, NumCtx: 4096},
			{Name: "utility", Models: []string{"mid", "fast"}, PriorityCeiling: wire.Low},
			{Name: "ghost", Agents: []string{"ghost-*"}, Models: []string{"absent", "gone"}, PriorityCeiling: wire.Low},
		},
		DefaultProfile: "utility",
		MaxQueueDepth:  2,
	}
}

type autoStack struct {
	t    *testing.T
	fake *ollamatest.Server
	d    *dispatcher.Dispatcher
	reg  *prometheus.Registry
	nc   *nats.Conn
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	// events are the workers' request events by request id.
	mu     sync.Mutex
	events map[string]events.Request
}

func startAuto(t *testing.T) *autoStack {
	t.Helper()
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 30 * time.Second})
	fake := ollamatest.New(t, ollamatest.WithModels("fast", "tiny", "deep", "mid"))
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	s := &autoStack{t: t, fake: fake, reg: prometheus.NewRegistry(), events: map[string]events.Request{}}
	s.nc, _ = srv.Connect(t)
	_, s.js = srv.Connect(t)
	var err error
	if s.kv, err = s.js.KeyValue(t.Context(), wire.BucketControl); err != nil {
		t.Fatal(err)
	}
	if _, err := s.nc.Subscribe(wire.MetricsPrefix+".req.>", func(m *nats.Msg) {
		var e events.Request
		if json.Unmarshal(m.Data, &e) == nil && !e.Dispatcher {
			s.mu.Lock()
			s.events[e.ID] = e
			s.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}

	dc := dispatcher.DefaultConfig()
	dc.Auto = autoConfig()
	dnc, _ := srv.Connect(t)
	s.d, err = dispatcher.New(t.Context(), dc, dnc, log, s.reg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s.d.Run)
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.RetryBackoff = "w1", 50*time.Millisecond, 20*time.Millisecond
	oc, err := ollama.NewClient(fake.URL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wnc, _ := srv.Connect(t)
	w, err := worker.New(t.Context(), wc, wnc, oc, defs, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, w.Run)
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(s.d.Models()) < 4 {
			return fmt.Errorf("dispatcher knows models %v", s.d.Models())
		}
		return nil
	})
	return s
}

// run runs f until the test ends and waits for it.
func run(t *testing.T, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// ask sends a generate request for model through the ask door as agent at
// priority p and returns the reply.
func (s *autoStack) ask(agent string, p wire.Priority, model, id string) (*nats.Msg, error) {
	m := nats.NewMsg(wire.AskSubject(p, agent))
	m.Header.Set(wire.HdrMsgID, id)
	m.Header.Set(wire.HdrCache, wire.CacheOff)
	m.Data = fmt.Appendf(nil, `{"model":%q,"prompt":"hello from %s","stream":false}`, model, id)
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Second)
	defer cancel()
	return s.nc.RequestMsgWithContext(ctx, m)
}

// event returns the worker's request event of id once it arrived.
func (s *autoStack) event(id string) events.Request {
	s.t.Helper()
	var e events.Request
	natstest.CheckFor(s.t, 5*time.Second, 10*time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		var ok bool
		if e, ok = s.events[id]; !ok {
			return fmt.Errorf("no request event for %s", id)
		}
		return nil
	})
	return e
}

// numCtxSent returns the num_ctx option of the generate call Ollama got
// for prompt marker id (0 when none was given).
func (s *autoStack) numCtxSent(id string) int {
	s.t.Helper()
	for _, raw := range s.fake.Requests("generate") {
		var r struct {
			Prompt  string         `json:"prompt"`
			Options map[string]any `json:"options"`
		}
		if json.Unmarshal(raw, &r) == nil && strings.HasSuffix(r.Prompt, " "+id) {
			n, _ := r.Options["num_ctx"].(float64)
			return int(n)
		}
	}
	s.t.Fatalf("Ollama got no call for %s", id)
	return 0
}

// modelWindow is the window the fake Ollama's models run in: the default
// the worker reads from /api/show (Ollama's 2048), none being configured.
const modelWindow = 2048

// TestAutoProfiles: an agent of each profile gets its profile's default
// model, at most at the profile's priority ceiling, in the model's one
// window (whatever the profile or the request says: a window per request
// would reload the model); the reply's Herd-Model names the model and the
// selections are counted by profile and model.
func TestAutoProfiles(t *testing.T) {
	s := startAuto(t)
	for _, tt := range []struct {
		agent    string
		asked    wire.Priority
		profile  string
		model    string
		priority wire.Priority
		numCtx   int
	}{
		{agent: "batch-indexer", asked: wire.High, profile: "high-throughput", model: "fast", priority: wire.High, numCtx: 1024},
		{agent: "code-planner", asked: wire.High, profile: "complex-reasoning", model: "deep", priority: wire.Normal, numCtx: 4096},
		{agent: "formatter", asked: wire.Normal, profile: "utility", model: "mid", priority: wire.Low},
	} {
		id := "auto-" + tt.agent
		r, err := s.ask(tt.agent, tt.asked, wire.ModelAuto, id)
		if err != nil {
			t.Fatalf("%s: %v", tt.agent, err)
		}
		if st := r.Header.Get(wire.HdrStatus); st != "200" {
			t.Fatalf("%s: status %s: %s", tt.agent, st, r.Data)
		}
		var body struct {
			Model string `json:"model"`
		}
		_ = json.Unmarshal(r.Data, &body)
		if got := r.Header.Get(wire.HdrModel); got != tt.model || body.Model != tt.model {
			t.Errorf("%s: Herd-Model %q, answer's model %q, want %s", tt.agent, got, body.Model, tt.model)
		}
		if e := s.event(id); wire.Priority(e.Priority) != tt.priority || e.Model != tt.model {
			t.Errorf("%s: ran as %s at %s, want %s at %s (asked %s)", tt.agent, e.Model, e.Priority, tt.model, tt.priority, tt.asked)
		}
		if got := s.numCtxSent(id); got != modelWindow {
			t.Errorf("%s: Ollama got num_ctx %d, want the model's window %d (the profile's is %d)", tt.agent, got, modelWindow, tt.numCtx)
		}
		if n := s.selections(tt.profile, tt.model); n != 1 {
			t.Errorf("herd_dispatcher_auto_selections_total{profile=%q,model=%q} = %v, want 1", tt.profile, tt.model, n)
		}
	}
	// A profile no model of which is served: 404 that says so.
	r, err := s.ask("ghost-1", wire.Normal, wire.ModelAuto, "ghost")
	if err != nil {
		t.Fatal(err)
	}
	var eb wire.ErrorBody
	if err := json.Unmarshal(r.Data, &eb); err != nil || r.Header.Get(wire.HdrStatus) != "404" || eb.Code != wire.CodeModelNotFound ||
		!strings.Contains(eb.Error, "profile ghost") || !strings.Contains(eb.Error, "absent is served by no worker") {
		t.Errorf("ghost profile: status %s, %s, want 404 model_not_found naming the profile", r.Header.Get(wire.HdrStatus), r.Data)
	}
	// num_ctx is herd's (dispatcher.runner_options): the model's window
	// replaces a request's own; its other options stay.
	m := nats.NewMsg(wire.AskSubject(wire.Normal, "batch-2"))
	m.Header.Set(wire.HdrCache, wire.CacheOff)
	m.Data = []byte(`{"model":"auto","prompt":"own window own-ctx","stream":false,"options":{"num_ctx":512,"seed":42}}`)
	if r, err := s.nc.RequestMsgWithContext(t.Context(), m); err != nil || r.Header.Get(wire.HdrStatus) != "200" {
		t.Fatalf("own num_ctx: %v", err)
	}
	for _, raw := range s.fake.Requests("generate") {
		if strings.Contains(string(raw), "own-ctx") && (!strings.Contains(string(raw), fmt.Sprintf(`"num_ctx":%d`, modelWindow)) || !strings.Contains(string(raw), `"seed":42`)) {
			t.Errorf("Ollama got %s: want the model's window %d and the request's seed", raw, modelWindow)
		}
	}
}

// selections returns herd_dispatcher_auto_selections_total{profile,model}.
func (s *autoStack) selections(profile, model string) float64 {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "herd_dispatcher_auto_selections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["profile"] == profile && labels["model"] == model {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestAutoFallbackBreakerOpen: while the default model's breaker is open,
// auto requests go to the profile's next model, and the change is
// announced with its reason.
func TestAutoFallbackBreakerOpen(t *testing.T) {
	s := startAuto(t)
	ann := make(chan *nats.Msg, 16)
	if _, err := s.nc.ChanSubscribe(wire.AutoEventSubject("complex-reasoning"), ann); err != nil {
		t.Fatal(err)
	}
	b := control.Breaker{Model: "deep", State: control.Open, At: time.Now(), Reason: "error_rate", RetryAfter: time.Minute}
	if _, err := s.kv.Put(t.Context(), control.BreakerKey("deep"), b.Marshal()); err != nil {
		t.Fatal(err)
	}
	i := 0
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		i++
		r, err := s.ask("planner", wire.Normal, wire.ModelAuto, fmt.Sprintf("open-%d", i))
		if err != nil {
			return err
		}
		if got := r.Header.Get(wire.HdrModel); got != "mid" {
			return fmt.Errorf("Herd-Model %q (status %s), want the fallback mid", got, r.Header.Get(wire.HdrStatus))
		}
		return nil
	})
	// The profile's first choice may have been deep (before the breaker
	// reached the dispatcher): the change to mid is announced with why.
	for found := false; !found; {
		select {
		case m := <-ann:
			var d policy.Decision[policy.Selection]
			if err := json.Unmarshal(m.Data, &d); err != nil {
				t.Fatalf("announcement %s: %v", m.Data, err)
			}
			if d.Value.Model == "mid" {
				found = true
				if !strings.Contains(d.Reason, "deep has its breaker open") || d.Numbers["breaker_open/deep"] != 1 {
					t.Errorf("announcement %s, want mid because deep's breaker is open", m.Data)
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no announcement of mid on " + wire.AutoEventSubject("complex-reasoning"))
		}
	}
	// The breaker closes: the default model again.
	b.State = control.Closed
	if _, err := s.kv.Put(t.Context(), control.BreakerKey("deep"), b.Marshal()); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		i++
		r, err := s.ask("planner", wire.Normal, wire.ModelAuto, fmt.Sprintf("closed-%d", i))
		if err != nil {
			return err
		}
		if got := r.Header.Get(wire.HdrModel); got != "deep" {
			return fmt.Errorf("Herd-Model %q, want deep again", got)
		}
		return nil
	})
}

// TestAutoFallbackBusy: when the default model has more batches waiting
// than max_queue_depth, auto requests go to the profile's next model.
func TestAutoFallbackBusy(t *testing.T) {
	s := startAuto(t)
	release := s.fake.Block()
	defer release()
	type reply struct {
		id string
		m  *nats.Msg
	}
	replies := make(chan reply, 64)
	send := func(agent, model, id string) {
		go func() {
			r, err := s.ask(agent, wire.Normal, model, id)
			if err == nil {
				replies <- reply{id, r}
			}
		}()
	}
	// Requests for deep, each in its own batch; the worker's one normal
	// slot takes the first, the others wait in HERD_BATCH. Each is sent
	// once the one before is in HERD_BATCH: spacing them with a sleep
	// left them to the goroutines' scheduling, and on a loaded machine
	// they could meet in one batch (max_wait 5ms), deep never looked busy.
	batches, err := s.js.Stream(t.Context(), wire.StreamBatch)
	if err != nil {
		t.Fatal(err)
	}
	lastSeq := func() uint64 {
		info, err := batches.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	for i := range 5 {
		before := lastSeq()
		send("direct", "deep", fmt.Sprintf("deep-%d", i))
		natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if lastSeq() == before {
				return fmt.Errorf("deep-%d not batched yet", i)
			}
			return nil
		})
	}
	i := 0
	natstest.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		i++
		send("planner", wire.ModelAuto, fmt.Sprintf("busy-%d", i))
		if n := s.selections("complex-reasoning", "mid"); n == 0 {
			return fmt.Errorf("no auto request went to mid yet; load %+v", s.d.AutoLoad(time.Now())["deep"])
		}
		return nil
	})
	t.Logf("deep's load when mid was chosen: %+v", s.d.AutoLoad(time.Now())["deep"])
	release()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-replies:
			if strings.HasPrefix(r.id, "busy-") && r.m.Header.Get(wire.HdrModel) == "mid" {
				return
			}
		case <-deadline:
			t.Fatal("no auto request was answered by mid")
		}
	}
}

// TestHerdModelFallback: a request routed to its model's breaker fallback
// says which model answered it.
func TestHerdModelFallback(t *testing.T) {
	s := startAuto(t)
	b := control.Breaker{Model: "deep", State: control.Open, Fallback: "fast", At: time.Now(), Reason: "error_rate", RetryAfter: time.Minute}
	if _, err := s.kv.Put(t.Context(), control.BreakerKey("deep"), b.Marshal()); err != nil {
		t.Fatal(err)
	}
	i := 0
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		i++
		r, err := s.ask("direct", wire.Normal, "deep", fmt.Sprintf("fb-%d", i))
		if err != nil {
			return err
		}
		if got := r.Header.Get(wire.HdrModel); got != "fast" || r.Header.Get(wire.HdrStatus) != "200" {
			return fmt.Errorf("Herd-Model %q, status %s, want fast's answer", got, r.Header.Get(wire.HdrStatus))
		}
		return nil
	})
}
