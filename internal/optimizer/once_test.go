package optimizer

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/modelbench"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestOnceReport: real traffic through a dispatcher and a worker on the
// fake Ollama, decisions in herd_control (the optimizer's and kinds it does
// not know) and two stored bench runs; the report of every kind has the
// figures of that traffic, lists every decision, recommends, and is stored
// in HERD_REPORTS.
func TestOnceReport(t *testing.T) {
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 30 * time.Second})
	fake := ollamatest.New(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	dc := dispatcher.DefaultConfig()
	dc.BatchSize, dc.MaxWait = 4, 20*time.Millisecond
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.NumCtx = "w1", 50*time.Millisecond, map[string]int{"tiny": 256}
	c := startHerd(t, srv, defs, fake.URL, dc, wc, log)

	// 12 requests at once (batches of up to 4), 4 of them with prompts
	// longer than tiny's num_ctx of 256.
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			prompt := fmt.Sprintf("short prompt number %d", i)
			if i%3 == 0 {
				prompt = strings.Repeat("word ", 300) + fmt.Sprint(i)
			}
			if _, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: prompt}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	_, js := srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	b := control.Breaker{Model: "big", State: control.Open, At: time.Now(), Reason: "consecutive_failures", RetryAfter: 10 * time.Second,
		Numbers: map[string]float64{"consecutive": 5}}
	put := func(k string, v []byte) {
		if _, err := kv.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	put(control.BreakerKey("big"), b.Marshal())
	// Kinds the report does not know: read generically.
	put("future."+hex.EncodeToString([]byte("llama3.2:3b")), []byte(`{"model":"llama3.2:3b","slots":3,"reason":"queue grew","at":"2026-01-02T03:04:05Z"}`))
	put("capture.enabled", []byte("on"))

	st, err := modelbench.OpenStore(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	for i, p95 := range []float64{100, 150} {
		r := &modelbench.Result{ID: fmt.Sprintf("run%d", i), Time: time.Now().Add(time.Duration(i-2) * time.Minute), Model: "tiny", Profile: "quick",
			Requests: 10, Concurrency: 2, Figures: modelbench.Figures{OK: 10, Latency: modelbench.Latency{P50: 50, P95: p95}, Throughput: 4, TokensPerSec: 30}}
		if err := st.Save(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}

	auto := policy.DefaultAutoConfig()
	auto.Profiles[0].Models = []string{"big", "tiny"}
	cfg := OnceConfig{Kinds: Kinds, Window: time.Minute, BatchSize: dc.BatchSize, MaxWait: dc.MaxWait,
		Context: policy.ContextConfig{Percentile: 0.99, Headroom: 0.25, MinSamples: 50, MinNumCtx: 256, MaxNumCtx: 4096, LowerRatio: 0.5, LowerAfter: time.Hour},
		NumCtx:  map[string]int{"tiny": 256}, Auto: auto}
	var r *OnceReport
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var err error
		if r, err = Once(t.Context(), js, cfg, time.Now()); err != nil {
			return err
		}
		if len(r.Performance.Rows) == 0 || r.Performance.Rows[0].Count != n || len(r.Batch.Rows) == 0 || r.Batch.Rows[0].Requests != n {
			return fmt.Errorf("not every event stored yet: %+v %+v", r.Performance.Rows, r.Batch.Rows)
		}
		return nil
	})
	if r.Kind != KindAll || r.Workers != 1 {
		t.Errorf("kind %q, %d workers, want all and 1", r.Kind, r.Workers)
	}

	// Batches: 12 requests in batches of at most 4.
	all, ok := r.Batch.all()
	if !ok || all.Requests != n || all.Batches < 3 || all.Batches > n || all.MaxSize > 4 || all.MaxSize < 1 || all.MeanSize != float64(n)/float64(all.Batches) {
		t.Errorf("batch figures %+v, want %d requests in 3 to %d batches of at most 4", all, n, n)
	}
	// Context: the long prompts filled tiny's 256 and a raise is recommended.
	if len(r.Context.Rows) != 1 {
		t.Fatalf("context rows %+v", r.Context.Rows)
	}
	cr := r.Context.Rows[0]
	if cr.Model != "tiny" || cr.Prompts != n || cr.Truncated != n/3 || cr.NumCtx != 256 || cr.Max < 256 || cr.P50 < 3 || cr.Recommended <= 256 ||
		!strings.Contains(cr.Reason, "truncated") {
		t.Errorf("context %+v, want tiny: %d prompts, %d truncated at 256, raised", cr, n, n/3)
	}
	// Benchmark: tiny's latest run, compared with the one before.
	if len(r.Benchmark.Rows) != 1 || r.Benchmark.Rows[0].RunID != "run1" || r.Benchmark.Rows[0].Runs != 2 || r.Benchmark.Rows[0].P95Ms != 150 ||
		!strings.Contains(strings.Join(r.Benchmark.Rows[0].Changes, " "), "p95 +50%") {
		t.Errorf("benchmark %+v, want run1 of 2, p95 150 (+50%%)", r.Benchmark.Rows)
	}
	// Every decision, whatever its kind.
	kinds := map[string]ControlEntry{}
	for _, e := range r.Decisions {
		kinds[e.Kind] = e
	}
	if e := kinds["breakers"]; e.Model != "big" || e.Reason != "consecutive_failures" || !strings.Contains(e.summary(), "state=open") {
		t.Errorf("breaker entry %+v (%s)", e, e.summary())
	}
	if e := kinds["future"]; e.Model != "llama3.2:3b" || e.Reason != "queue grew" || e.summary() != "slots=3" {
		t.Errorf("unknown kind's entry %+v (%s)", e, e.summary())
	}
	if e := kinds["capture"]; e.summary() != "on" {
		t.Errorf("capture entry %+v", e)
	}
	// Recommendations of every part, each with its reason.
	parts := map[string]int{}
	for _, x := range r.Recommendations {
		parts[x.Part]++
		if x.Reason == "" || x.Setting == "" {
			t.Errorf("recommendation without reason or setting: %+v", x)
		}
	}
	if parts[KindBatch] != 2 || parts[KindContext] != 1 || parts[KindBenchmark] < 2 {
		t.Errorf("recommendations by part %v, want 2 batch, 1 context, 2+ benchmark: %+v", parts, r.Recommendations)
	}
	var ctxRec, profRec Recommendation
	for _, x := range r.Recommendations {
		switch {
		case x.Part == KindContext:
			ctxRec = x
		case strings.Contains(x.Setting, "high-throughput"):
			profRec = x
		}
	}
	if !ctxRec.Change || ctxRec.Current != "256" {
		t.Errorf("context recommendation %+v, want a change from 256", ctxRec)
	}
	if !profRec.Change || profRec.Recommended != "tiny,big" {
		t.Errorf("profile recommendation %+v, want tiny (the only benchmarked model) first", profRec)
	}

	// Stored, and read back the same.
	if err := r.Store(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	back, err := LastReport(t.Context(), js, KindAll)
	if err != nil {
		t.Fatal(err)
	}
	if back.Stored != r.Stored || back.Context.Rows[0] != cr || back.Batch.Rows[0].Requests != n || len(back.Decisions) != len(r.Decisions) ||
		len(back.Recommendations) != len(r.Recommendations) {
		t.Errorf("stored report %+v differs from %+v", back, r)
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"batches (batch_size 4", "context windows", "benchmarks", "decisions in herd_control", "state=open",
		"reason: queue grew", "recommendations", "dispatcher.batch_size", "stored in HERD_REPORTS as herd.reports.all"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
	t.Logf("report:\n%s", buf.String())

	// One kind alone is stored under its own subject.
	one, err := Once(t.Context(), js, OnceConfig{Kinds: []string{KindContext}, Window: time.Minute, Context: cfg.Context}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Store(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	if one.Kind != KindContext || one.Performance != nil || one.Batch != nil || one.Context == nil {
		t.Errorf("context-only report %+v", one)
	}
	if got, err := LastReport(t.Context(), js, KindContext); err != nil || got.Stored != one.Stored {
		t.Errorf("last context report %+v %v", got, err)
	}
	if _, err := Once(context.Background(), js, OnceConfig{Kinds: []string{"nope"}, Window: time.Minute}, time.Now()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown kind: %v", err)
	}
}
