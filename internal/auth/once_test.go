package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/modelbench"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/policy"
)

// TestOptimizerOnceReport: the optimizer's role can build and store every
// part of a one-shot report (optimizer --once): metrics, the benchmark
// history with its runs, herd_control's decisions.
func TestOptimizerOnceReport(t *testing.T) {
	s := startShipped(t)
	admin := login(t, s, auth.Admin)
	st, err := modelbench.OpenStore(t.Context(), admin.js)
	if err != nil {
		t.Fatal(err)
	}
	r := &modelbench.Result{ID: "run1", Time: time.Now(), Model: "tiny", Profile: "quick", Requests: 1, Concurrency: 1,
		Figures: modelbench.Figures{OK: 1}}
	if err := st.Save(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	o := login(t, s, auth.Optimizer)
	// A refused JetStream call can wait for ever: bound the report.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg := optimizer.OnceConfig{Kinds: optimizer.Kinds, Window: time.Minute, BatchSize: 16, MaxWait: 10 * time.Millisecond,
		Context: policy.DefaultContextConfig(), Auto: policy.DefaultAutoConfig()}
	rep, err := optimizer.Once(ctx, o.js, cfg, time.Now())
	if err != nil {
		t.Fatalf("optimizer --once as the optimizer: %v (violations %v)", err, o.violations())
	}
	if len(rep.Benchmark.Rows) != 1 {
		t.Errorf("benchmark rows %+v, want tiny's run", rep.Benchmark.Rows)
	}
	if err := rep.Store(ctx, o.js); err != nil {
		t.Errorf("store the report: %v", err)
	}
	_ = o.nc.Flush()
	if v := o.violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
}
