package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// lostModel is a model name the managed Ollama does not have until the
// breaker test creates it.
const lostModel = "herd-lost"

// TestRealOptimizer runs the optimizer's end-to-end proofs on one managed
// Ollama with the generated herd-tiny: "model": "auto" gets a real answer;
// a model Ollama lacks opens its breaker, fails fast while the healthy
// model's latency holds, and closes once the model exists; prompts longer
// than num_ctx raise it and truncations stop.
func TestRealOptimizer(t *testing.T) {
	inst := startRealOllama(t, managed.Config{TestModels: []string{tinyModel}})
	t.Run("auto", func(t *testing.T) { realAuto(t, inst) })
	t.Run("breaker", func(t *testing.T) { realBreaker(t, inst) })
	t.Run("numctx", func(t *testing.T) { realNumCtxRaised(t, inst) })
}

// startOptimizer runs an optimizer with cfg on the stack until the test
// ends.
func startOptimizer(t *testing.T, s *stack, cfg optimizer.Config) {
	t.Helper()
	nc, _ := s.srv.Connect(t)
	opt, err := optimizer.New(t.Context(), cfg, nc, s.log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = opt.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// realAuto: a "model": "auto" request of an agent matching a profile runs
// on the profile's model on the real Ollama and says so in Herd-Model.
func realAuto(t *testing.T, inst *managed.Instance) {
	s := newStack(t, stackOpts{
		ollamaURL: inst.URL(),
		wcfg:      realStackOpts(inst.URL(), nil).wcfg,
		dcfg: func(c *dispatcher.Config) {
			c.Auto = policy.AutoConfig{
				Profiles: []policy.Profile{
					{Name: "high-throughput", Agents: []string{"batch-*"}, Models: []string{"not-served", tinyModel}, PriorityCeiling: wire.Normal, NumCtx: realNumCtx},
					{Name: "utility", Models: []string{tinyModel}, PriorityCeiling: wire.Low},
				},
				DefaultProfile: "utility", MaxQueueDepth: 32, MaxQueueAge: 10 * time.Second,
			}
		},
	})
	nc, _ := s.srv.Connect(t)
	for _, tt := range []struct{ agent, profile string }{{"batch-7", "high-throughput"}, {"writer", "utility"}} {
		m := nats.NewMsg(wire.AskSubject(wire.High, tt.agent))
		m.Data = []byte(`{"model":"auto","prompt":"why is the sky blue","options":{"temperature":0,"num_predict":8}}`)
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		begin := time.Now()
		r, err := nc.RequestMsgWithContext(ctx, m)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tt.agent, err)
		}
		var ans api.GenerateResponse
		if err := json.Unmarshal(r.Data, &ans); err != nil || r.Header.Get(wire.HdrStatus) != "200" {
			t.Fatalf("%s: status %s, %s (%v)", tt.agent, r.Header.Get(wire.HdrStatus), r.Data, err)
		}
		if got := r.Header.Get(wire.HdrModel); got != tinyModel || ans.Model != tinyModel || !ans.Done || ans.Response == "" || ans.EvalCount != 8 {
			t.Errorf("%s: Herd-Model %q, answer %+v; want herd-tiny's 8 tokens", tt.agent, got, ans)
		}
		t.Logf("%s (%s): %s answered %q in %v", tt.agent, tt.profile, r.Header.Get(wire.HdrModel), oneLine(ans.Response), ms(time.Since(begin)))
	}
}

// p95Of runs n generations of herd-tiny one after the other (cache off,
// distinct prompts) and returns their 95th percentile latency.
func p95Of(t *testing.T, c *client.Client, tag string, n int) time.Duration {
	t.Helper()
	var ds []time.Duration
	for i := range n {
		begin := time.Now()
		_, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: tinyModel, Prompt: fmt.Sprintf("%s question %d: why is the sea blue", tag, i),
			Options: map[string]any{"temperature": 0, "num_predict": 8}}, client.Cache(wire.CacheOff))
		if err != nil {
			t.Fatalf("%s: herd-tiny: %v", tag, err)
		}
		ds = append(ds, time.Since(begin))
	}
	return policy.Percentile(ds, 0.95)
}

// realBreaker: requests for a model Ollama does not have fail; its breaker
// opens within the breaker window, its requests are answered 503
// breaker_open (retryable) at once, herd-tiny's p95 does not change, and
// once the model exists (created from herd-tiny) the breaker half-opens,
// the probes succeed and it closes.
func realBreaker(t *testing.T, inst *managed.Instance) {
	s := newStack(t, realStackOpts(inst.URL(), func(c *worker.Config) {
		c.Models = []string{tinyModel, lostModel}
		c.NumCtx[lostModel] = realNumCtx
	}))
	ocfg := optimizer.DefaultConfig()
	ocfg.Tick = 100 * time.Millisecond
	ocfg.Breaker = breaker.Config{Window: 10 * time.Second, MinRequests: 3, ErrorRate: 0.5, ConsecutiveFailures: 3,
		CoolDown: 4 * time.Second, HalfOpenProbes: 2, ProbeTimeout: 30 * time.Second}
	startOptimizer(t, s, ocfg)
	c := s.client(client.WithAgent("breaker-test"))
	_, js := s.srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	state := func() control.Breaker {
		var b control.Breaker
		if e, err := kv.Get(t.Context(), control.BreakerKey(lostModel)); err == nil {
			_ = json.Unmarshal(e.Value(), &b)
		}
		return b
	}
	askLost := func(i int) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		begin := time.Now()
		_, _, err := c.Generate(ctx, &api.GenerateRequest{Model: lostModel, Prompt: fmt.Sprintf("lost %d", i),
			Options: map[string]any{"temperature": 0, "num_predict": 8}}, client.Cache(wire.CacheOff))
		return time.Since(begin), err
	}

	// Before: herd-tiny loaded and measured.
	p95Of(t, c, "warm", 2)
	before := p95Of(t, c, "before", 8)

	// Failure: herd-lost's calls fail (Ollama: model not found) until its
	// breaker opens.
	failStart := time.Now()
	i := 0
	natstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if b := state(); b.State == control.Open {
			return nil
		}
		i++
		_, err := askLost(i)
		var he *client.Error
		if errors.As(err, &he) && he.Code == client.CodeBreakerOpen {
			return nil
		}
		return fmt.Errorf("breaker of %s is %q after %d requests (last: %v)", lostModel, state().State, i, err)
	})
	opened := state()
	openTook := time.Since(failStart)
	if openTook > ocfg.Breaker.Window {
		t.Errorf("breaker opened after %v, more than its window %v", openTook, ocfg.Breaker.Window)
	}
	t.Logf("breaker of %s opened after %v and %d requests: %s %v", lostModel, ms(openTook), i, opened.Reason, opened.Numbers)

	// During: herd-lost's requests fail fast while herd-tiny is measured.
	var fast, slowest atomic.Int64
	var other atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			took, err := askLost(1000 + j)
			var he *client.Error
			if errors.As(err, &he) && he.Code == client.CodeBreakerOpen && he.Status == 503 && he.Retryable {
				fast.Add(1)
				if int64(took) > slowest.Load() {
					slowest.Store(int64(took))
				}
			} else if err != nil || he == nil {
				other.Store(fmt.Sprint(err))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	during := p95Of(t, c, "during", 8)
	close(stop)
	wg.Wait()
	if fast.Load() == 0 {
		t.Errorf("no request for %s was answered 503 breaker_open while it was open (other: %v)", lostModel, other.Load())
	}
	if d := time.Duration(slowest.Load()); d > 2*time.Second {
		t.Errorf("breaker_open answers took up to %v, want fast failures", d)
	}
	// A loaded 2-core machine moves latencies by itself: only a large
	// ratio and a large absolute change both count as slowing down.
	if ratio := float64(during) / float64(before); ratio > 3 && during-before > time.Second {
		t.Errorf("herd-tiny p95 %v while %s was failing, %v before (x%.2f)", during, lostModel, before, ratio)
	}
	t.Logf("herd-tiny p95: before %v, during %v (x%.2f); %d breaker_open answers, slowest %v",
		ms(before), ms(during), float64(during)/float64(before), fast.Load(), ms(time.Duration(slowest.Load())))

	// Recovery: the model now exists; after the cool-down the probes
	// succeed and the breaker closes.
	recovered := time.Now()
	// What `ollama create herd-lost -f Modelfile` with "FROM herd-tiny" does.
	if err := directClient(t, inst.URL()).Create(t.Context(), &api.CreateRequest{Model: lostModel, From: tinyModel},
		func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	var states []string
	natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		b := state()
		if len(states) == 0 || states[len(states)-1] != b.State {
			states = append(states, b.State)
		}
		if b.State == control.Closed {
			return nil
		}
		i++
		_, _ = askLost(i)
		return fmt.Errorf("breaker of %s is %q (%s)", lostModel, b.State, b.Reason)
	})
	if !slices.Contains(states, control.HalfOpen) {
		t.Errorf("breaker states after recovery %v, want half_open before closed", states)
	}
	if _, err := askLost(i + 1); err != nil {
		t.Errorf("%s after its breaker closed: %v", lostModel, err)
	}
	after := p95Of(t, c, "after", 8)
	t.Logf("breaker of %s closed %v after the model was created (states %v); herd-tiny p95 after %v", lostModel,
		ms(time.Since(recovered)), states, ms(after))
}

// realNumCtxRaised: herd-tiny runs in 256 tokens; prompts of about 300
// are truncated by Ollama and counted; the optimizer raises num_ctx in
// herd_control, the worker applies it, and the truncation counter stops
// rising.
func realNumCtxRaised(t *testing.T, inst *managed.Instance) {
	const small = 256
	// The harness's worker serves only a model nobody asks for; herd-tiny
	// is served by a worker whose metrics the test reads.
	s := newStack(t, realStackOpts(inst.URL(), func(c *worker.Config) { c.Models = []string{"unused"} }))
	reg := prometheus.NewRegistry()
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.CPUBudget = "ctx1", 50*time.Millisecond, 1
	wc.Models, wc.NumCtx = []string{tinyModel}, map[string]int{tinyModel: small}
	s.startWorkerOn(wc, reg)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, ok := s.disp.Models()[tinyModel]; !ok {
			return errors.New("herd-tiny not registered yet")
		}
		return nil
	})
	ocfg := optimizer.DefaultConfig()
	ocfg.Tick = 100 * time.Millisecond
	ocfg.Context.MinSamples, ocfg.Context.MinNumCtx, ocfg.Context.MaxNumCtx = 3, small, 4096
	startOptimizer(t, s, ocfg)
	c := s.client(client.WithAgent("ctx-test"))
	_, js := s.srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("the quick brown fox jumps over the lazy dog ", 12)
	// The whole prompt's size, measured in a window it fits in.
	full, err := directGenerate(t.Context(), directClient(t, inst.URL()), tinyModel, "0 "+long,
		map[string]any{"num_thread": 1, "num_ctx": 4096, "temperature": 0, "num_predict": 1})
	if err != nil {
		t.Fatal(err)
	}
	if full.PromptEvalCount <= small {
		t.Fatalf("the prompt has %d tokens, want more than %d", full.PromptEvalCount, small)
	}
	var lastPrompt, firstPrompt int
	ask := func(i int) {
		t.Helper()
		r, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: tinyModel, Prompt: fmt.Sprintf("%d %s", i, long),
			Options: map[string]any{"temperature": 0, "num_predict": 4}}, client.Cache(wire.CacheOff))
		if err != nil {
			t.Fatal(err)
		}
		lastPrompt = r.PromptEvalCount
		if i == 0 {
			firstPrompt = r.PromptEvalCount
		}
	}
	truncated := func() float64 { return scrape(t, reg).value("herd_worker_truncated_prompts_total", "model="+tinyModel) }
	windowOf := func() float64 { return scrape(t, reg).value("herd_worker_num_ctx", "model="+tinyModel) }

	i := 0
	var chosen control.NumCtx
	var steps []string
	natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		ask(i)
		i++
		e, err := kv.Get(t.Context(), control.NumCtxKey(tinyModel))
		if err != nil {
			return fmt.Errorf("no num_ctx decision after %d prompts (last prompt_eval_count %d, truncated %v): %w", i, lastPrompt, truncated(), err)
		}
		if err := json.Unmarshal(e.Value(), &chosen); err != nil {
			return err
		}
		if len(steps) == 0 || !strings.HasSuffix(steps[len(steps)-1], chosen.Reason) {
			steps = append(steps, fmt.Sprintf("%d prompts: %s", i, chosen.Reason))
		}
		if chosen.NumCtx < full.PromptEvalCount+5 {
			return fmt.Errorf("num_ctx %d does not hold the %d-token prompt yet", chosen.NumCtx, full.PromptEvalCount)
		}
		return nil
	})
	t.Logf("prompt of %d tokens, %d of them evaluated in num_ctx %d at first; decisions: %s", full.PromptEvalCount, firstPrompt, small, strings.Join(steps, "; "))
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if w := windowOf(); w != float64(chosen.NumCtx) {
			return fmt.Errorf("worker runs herd-tiny in %v, want %d", w, chosen.NumCtx)
		}
		return nil
	})
	// Answers that ran before the worker applied it may still be counted:
	// start from the count once the new window is in place and idle.
	waitIdle(t, s, tinyModel)
	atRaise := truncated()
	if atRaise < 1 {
		t.Errorf("herd_worker_truncated_prompts_total %v, want the truncations that led to the raise", atRaise)
	}
	for j := range 4 {
		ask(1000 + j)
		if lastPrompt >= chosen.NumCtx-4 || lastPrompt <= small {
			t.Errorf("prompt_eval_count %d in num_ctx %d, want the whole prompt (> %d) in the window", lastPrompt, chosen.NumCtx, small)
		}
	}
	if now := truncated(); now != atRaise {
		t.Errorf("herd_worker_truncated_prompts_total rose from %v to %v after num_ctx became %d", atRaise, now, chosen.NumCtx)
	}
	t.Logf("truncations: %v until the raise, %v after 4 more prompts of %d tokens in %d", atRaise, truncated(), lastPrompt, chosen.NumCtx)
}
