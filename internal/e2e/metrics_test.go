package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/reqmetrics"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestMetricsAfterTraffic: after real requests, /metrics (dispatcher and
// worker on one registry, as in `herd up`) counts exactly what was sent,
// shows coalesced requests waiting in the queue while Ollama is stuck, and
// shows the queues empty once everything is answered.
func TestMetricsAfterTraffic(t *testing.T) {
	s := newStack(t, stackOpts{})
	// Replace the harness's worker by one whose metrics go to the
	// dispatcher's registry; the new one registers before the old one
	// leaves, so the dispatcher always knows the models' digests.
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.RetryBackoff = "m1", 50*time.Millisecond, 20*time.Millisecond
	wc.NumCtx = map[string]int{"tiny": 2048}
	s.startWorkerOn(wc, s.dreg)
	nc, _ := s.srv.Connect(t)
	b, err := provision.Bind(t.Context(), nc)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, err := b.Control.Get(t.Context(), registry.Key("m1"))
		return err
	})
	s.mu.Lock()
	w1 := s.workers[0]
	s.mu.Unlock()
	w1.cancel()
	<-w1.done
	s.waitModels()

	c := s.client(client.WithAgent("metrics"))
	ctx := t.Context()
	temp0 := map[string]any{"temperature": 0}
	gen := func(p client.Priority, model, prompt string, opts map[string]any, want string) {
		t.Helper()
		_, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: prompt, Options: opts}, client.At(p))
		if err != nil {
			t.Fatalf("%s %s %q: %v", p, model, prompt, err)
		}
		if meta.Cache != want {
			t.Fatalf("%s %s %q: Herd-Cache %q, want %q", p, model, prompt, meta.Cache, want)
		}
	}
	// high: a miss, then its repeat from the cache.
	gen(wire.High, "tiny", "alpha", temp0, "miss")
	gen(wire.High, "tiny", "alpha", temp0, "hit")
	// normal: three samples (temperature > 0: never cached).
	for i := range 3 {
		gen(wire.Normal, "small", fmt.Sprintf("sample %d", i), nil, "miss")
	}
	// low: a miss and two hits.
	gen(wire.Low, "tiny", "beta", temp0, "miss")
	gen(wire.Low, "tiny", "beta", temp0, "hit")
	gen(wire.Low, "tiny", "beta", temp0, "hit")
	// Bad requests: malformed JSON (normal), an unknown model (low).
	var herr *client.Error
	if _, _, err := c.Raw(ctx, []byte(`{"model":`), client.At(wire.Normal)); !errors.As(err, &herr) || herr.Code != wire.CodeInvalidRequest {
		t.Fatalf("malformed request: %v", err)
	}
	if _, _, err := c.Generate(ctx, &api.GenerateRequest{Model: "nope", Prompt: "x"}, client.At(wire.Low)); !errors.As(err, &herr) || herr.Code != wire.CodeModelNotFound {
		t.Fatalf("unknown model: %v", err)
	}

	// Three identical requests while Ollama is stuck: one runs, two wait
	// for it in HERD_REQ (coalesced), and the queue shows them.
	release := s.fake.Block()
	defer release()
	var wg sync.WaitGroup
	caches := make(chan string, 3)
	for range 3 {
		wg.Go(func() {
			_, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "gamma", Options: temp0}, client.At(wire.Normal))
			if err != nil {
				t.Error(err)
				return
			}
			caches <- meta.Cache
		})
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		e := scrape(t, s.dreg)
		if d := e.value("herd_queue_depth", "priority=normal"); d != 2 {
			return fmt.Errorf("normal queue depth %v, want 2 held followers", d)
		}
		if a := e.value("herd_queue_oldest_age_seconds", "priority=normal"); a <= 0 {
			return fmt.Errorf("oldest age %v, want > 0", a)
		}
		if d := e.value("herd_queue_depth", "priority=high"); d != 0 {
			return fmt.Errorf("high queue depth %v, want 0", d)
		}
		return nil
	})
	release()
	wg.Wait()
	close(caches)
	got := map[string]int{}
	for c := range caches {
		got[c]++
	}
	if got["miss"] != 1 || got["coalesced"] != 2 {
		t.Fatalf("identical requests: %v, want 1 miss and 2 coalesced", got)
	}

	// 13 answers: high 2, normal 3+1+3, low 3+1.
	var e *exposition
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		e = scrape(t, s.dreg)
		for _, p := range wire.Priorities {
			if d := e.value("herd_queue_depth", "priority="+string(p)); d != 0 {
				return fmt.Errorf("%s queue depth %v after drain", p, d)
			}
			if a := e.value("herd_queue_oldest_age_seconds", "priority="+string(p)); a != 0 {
				return fmt.Errorf("%s oldest age %v after drain", p, a)
			}
		}
		if n := e.sum("herd_request_duration_seconds"); n != 13 {
			return fmt.Errorf("request duration count %v, want 13", n)
		}
		if n := e.sum("herd_requests_total"); n != 13 {
			return fmt.Errorf("herd_requests_total sums to %v, want 13", n)
		}
		return nil
	})
	want := []struct {
		name   string
		labels []string
		v      float64
	}{
		{"herd_dispatcher_requests_total", []string{"priority=high", "outcome=batched"}, 1},
		{"herd_dispatcher_requests_total", []string{"priority=high", "outcome=hit"}, 1},
		{"herd_dispatcher_requests_total", []string{"priority=normal", "outcome=batched"}, 4},
		{"herd_dispatcher_requests_total", []string{"priority=normal", "outcome=coalesced"}, 2},
		{"herd_dispatcher_requests_total", []string{"priority=normal", "outcome=invalid_request"}, 1},
		{"herd_dispatcher_requests_total", []string{"priority=low", "outcome=batched"}, 1},
		{"herd_dispatcher_requests_total", []string{"priority=low", "outcome=hit"}, 2},
		{"herd_dispatcher_requests_total", []string{"priority=low", "outcome=model_not_found"}, 1},
		{"herd_dispatcher_rejected_total", []string{"outcome=invalid_request"}, 1},
		{"herd_dispatcher_rejected_total", []string{"outcome=model_not_found"}, 1},
		{"herd_cache_results_total", []string{"result=hit"}, 3},
		{"herd_cache_results_total", []string{"result=coalesced"}, 2},
		{"herd_cache_results_total", []string{"result=miss"}, 6},
		{"herd_worker_requests_total", []string{"worker=m1", "model=tiny", "outcome=ok"}, 3},
		{"herd_worker_requests_total", []string{"worker=m1", "model=small", "outcome=ok"}, 3},
		{"herd_requests_total", []string{"priority=high", "outcome=ok"}, 2},
		{"herd_requests_total", []string{"priority=normal", "outcome=ok"}, 6},
		{"herd_requests_total", []string{"priority=normal", "outcome=invalid_request"}, 1},
		{"herd_requests_total", []string{"priority=low", "outcome=ok"}, 3},
		{"herd_requests_total", []string{"priority=low", "outcome=model_not_found"}, 1},
		{"herd_request_duration_seconds", []string{"priority=high", "model=tiny"}, 2},
		{"herd_request_duration_seconds", []string{"priority=normal", "model=small"}, 3},
		{"herd_request_duration_seconds", []string{"priority=normal", "model=tiny"}, 3},
		{"herd_request_duration_seconds", []string{"priority=normal", "model="}, 1},
		{"herd_request_duration_seconds", []string{"priority=low", "model=tiny"}, 3},
		{"herd_request_duration_seconds", []string{"priority=low", "model="}, 1},
		{"herd_queue_wait_seconds", []string{"priority=normal", "model=tiny"}, 3},
		{"herd_worker_num_ctx", []string{"worker=m1", "model=tiny"}, 2048},
		{"herd_queue_redelivered", []string{"priority=normal"}, 0},
	}
	for _, w := range want {
		if got := e.sum(w.name, w.labels...); got != w.v || e.value(w.name, w.labels...) < 0 {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.v)
		}
	}
	if n := e.sum("herd_queue_wait_seconds"); n != 13 {
		t.Errorf("queue wait count %v, want 13 (one per answer)", n)
	}
	if n := e.sum("herd_worker_ollama_calls_total", "worker=m1", "outcome=ok"); n != 6 {
		t.Errorf("ollama calls %v, want 6 (one per miss)", n)
	}
	for _, m := range []string{"tiny", "small"} {
		for _, k := range []string{"prompt", "eval"} {
			if v := e.value("herd_worker_tokens_total", "model="+m, "kind="+k); v <= 0 {
				t.Errorf("tokens %s/%s = %v, want > 0", m, k, v)
			}
		}
	}
	checkExposition(t, e.text)
	checkOutcomeLabel(t, e.text)
}

// checkOutcomeLabel: every herd metric that counts requests or calls by
// what became of them names it reqmetrics.OutcomeLabel, so a dashboard
// groups them by one label; none uses status, code or result for it
// (herd_cache_results_total's result is the cache's, not an outcome).
func checkOutcomeLabel(t *testing.T, text string) {
	t.Helper()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := tp.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "status", "code", "result":
					if name != "herd_cache_results_total" {
						t.Errorf("%s has label %s=%q: a request's outcome is %q", name, lp.GetName(), lp.GetValue(), reqmetrics.OutcomeLabel)
					}
				}
			}
		}
	}
	for _, name := range []string{"herd_requests_total", "herd_dispatcher_requests_total", "herd_dispatcher_rejected_total", "herd_worker_requests_total", "herd_worker_ollama_calls_total"} {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Errorf("%s has no series", name)
			continue
		}
		for _, m := range mf.GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == reqmetrics.OutcomeLabel }) {
				t.Errorf("%s series %v lacks the %s label", name, m.GetLabel(), reqmetrics.OutcomeLabel)
			}
		}
	}
}
