package perf

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/managed"
)

// startBenchOllama starts a managed Ollama serving the tiny model with
// benchParallel slots, for one benchmark; it stops when the test ends.
func startBenchOllama(t *testing.T) *realOllama {
	t.Helper()
	bin, err := managed.FindBinary()
	if err != nil {
		t.Skipf("needs the pinned Ollama: %v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	inst, err := managed.Start(ctx, managed.Config{
		Binary: bin, Dir: dir, NumParallel: benchParallel, TestModels: []string{tiny},
	}, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = inst.Wait() })
	u, err := url.Parse(inst.URL())
	if err != nil {
		t.Fatal(err)
	}
	return &realOllama{
		url: inst.URL(),
		log: filepath.Join(dir, "ollama.log"),
		direct: api.NewClient(u, &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
		}}),
	}
}

// metOrNot says whether ratio reaches goal.
func metOrNot(ratio, goal float64) string {
	if ratio >= goal {
		return "met"
	}
	return "not met"
}

// TestOllamaBenchUnlisted is issue 14, item 3: the num_ctx mix (512, 1024,
// 2048 round-robin, 4 callers) on a model herd's configuration never
// names (no models[] entry, no optimizer decision). Direct, Ollama
// reloads the model at every change of num_ctx; herd runs every request
// in the model's own window (read from Ollama's /api/show). Goal: herd's
// throughput at least 10x direct's.
func TestOllamaBenchUnlisted(t *testing.T) {
	benchOnly(t)
	o := startBenchOllama(t)
	const n, callers, goal = 60, 4, 10.0
	ctx := t.Context()
	numCtx := []int{512, 1024, 2048}
	req := func(i int) *api.GenerateRequest {
		return &api.GenerateRequest{
			Model:   tiny,
			Prompt:  fmt.Sprintf("request %d of the unlisted num_ctx mix: the herd walks on", i),
			Options: map[string]any{"num_ctx": numCtx[i%len(numCtx)], "num_predict": 16, "temperature": 0.8},
		}
	}
	if _, err := o.generate(ctx, req(2)); err != nil { // load the model
		t.Fatal(err)
	}
	before := o.loads(t)
	direct, err := drive("direct", n, callers, func(_, i int) error {
		_, err := o.generate(ctx, req(i))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	directLoads := o.loads(t) - before

	wc := benchWorker(0)
	wc.NumCtx = nil // herd is never told about the model's window
	c := startHerd(t, o.url, wc)
	if _, _, err := c.Generate(ctx, req(2)); err != nil {
		t.Fatal(err)
	}
	before = o.loads(t)
	herd, err := drive("herd", n, callers, func(_, i int) error {
		_, _, err := c.Generate(ctx, req(i))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	herdLoads := o.loads(t) - before

	var b strings.Builder
	fmt.Fprintf(&b, "\n(3) num_ctx mix on a model the configuration does not list: %d requests, num_ctx %v round-robin, num_predict 16, %d callers, %s\n",
		n, numCtx, callers, tiny)
	fmt.Fprintf(&b, "  %-8s %8s %10s %10s %12s\n", "", "req/s", "p50", "p95", "model loads")
	for _, r := range []struct {
		*result
		loads int
	}{{direct, directLoads}, {herd, herdLoads}} {
		fmt.Fprintf(&b, "  %-8s %8.1f %10v %10v %12d\n", r.name, r.throughput,
			r.pct(0.5).Round(time.Millisecond), r.pct(0.95).Round(time.Millisecond), r.loads)
	}
	ratio := herd.throughput / direct.throughput
	fmt.Fprintf(&b, "  herd vs direct (same run): throughput x%.2f; goal >= x%.0f: %s\n", ratio, goal, metOrNot(ratio, goal))
	fmt.Print(b.String())
}
