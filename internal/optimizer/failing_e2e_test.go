package optimizer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/testmodel"
	"github.com/sutazai/herd/internal/worker"
)

// broken is a model whose every call fails: its blob is truncated after
// it was created, so Ollama's runner cannot load it and Ollama answers 500.
const broken = "herd-broken"

// createBrokenModel creates broken in the test's managed Ollama (a tiny
// model under another name, so its blob is its own) and truncates its
// blob.
func createBrokenModel(t *testing.T) {
	t.Helper()
	v, ok := ollamas.Load(t.Name())
	if !ok {
		t.Fatal("no managed Ollama for this test")
	}
	at := v.(ollamaAt)
	size := testmodel.Tiny
	size.Name = broken
	path := filepath.Join(t.TempDir(), broken+".gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := testmodel.Write(f, size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	u, _ := url.Parse(at.url)
	c := api.NewClient(u, http.DefaultClient)
	if err := c.CreateBlob(t.Context(), digest, strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(t.Context(), &api.CreateRequest{Model: broken, Files: map[string]string{broken + ".gguf": digest}}, func(api.ProgressResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(at.dir, "models", "blobs", strings.Replace(digest, ":", "-", 1))
	if err := os.Truncate(blob, int64(len(data)/3)); err != nil {
		t.Fatal(err)
	}
	err = c.Generate(t.Context(), &api.GenerateRequest{Model: broken, Prompt: "hi"}, func(api.GenerateResponse) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "unable to load model") {
		t.Fatalf("%s answered %v, want unable to load model", broken, err)
	}
}

// TestBudgetLeavesFailingModel is issue 16, item 5, on a real Ollama: a
// model whose every call fails (Ollama answers 500; its breaker opens and
// cycles through half-open) beside a busy healthy one, on a worker with 2
// slots and the default minimum of 1 slot per model. Its retries and
// queue are not demand: the healthy model gets both slots within a
// breaker window, and the failing model no more than its probes.
func TestBudgetLeavesFailingModel(t *testing.T) {
	ocfg := testConfig()
	ocfg.Tick = 100 * time.Millisecond
	ocfg.WorkerTimeout = 5 * time.Second
	ocfg.Budget = policy.BudgetConfig{Persist: 2, Hold: time.Second, MaxMoves: 1, MinQueueAge: 100 * time.Millisecond, MinSlots: 1}
	s := startRealStack(t, 2, ocfg, func(c *worker.Config) {
		createBrokenModel(t)
		c.Slots, c.ReservedHighSlots, c.CPUBudget = 2, 0, 2
		c.Models, c.Warm = []string{tiny, broken}, []string{tiny}
		c.NumCtx = map[string]int{tiny: 2048, broken: 2048}
	})

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	load := func(model string, callers int) {
		for i := range callers {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					if err := s.ask(ctx, model, fmt.Sprintf("%s %d %d", model, i, n), 8); err != nil {
						failed.Add(1)
						if model == broken {
							// A caller that backs off a little, as an agent would.
							select {
							case <-ctx.Done():
							case <-time.After(50 * time.Millisecond):
							}
						}
						continue
					}
					ok.Add(1)
				}
			})
		}
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	start := time.Now()
	load(broken, 4)
	load(tiny, 4)
	// A bound, not a wait: on a loaded machine the broken model fails
	// slowly (each load of its truncated blob takes a while).
	natstest.CheckFor(t, 2*ocfg.Breaker.Window+60*time.Second, 50*time.Millisecond, func() error {
		b, err := s.budget(t)
		if err != nil {
			return err
		}
		if b.Total != 2 || b.Slots[tiny] != 2 || b.Slots[broken] != 0 {
			return fmt.Errorf("allocation %v of %d (%s), want %s 2 of 2", b.Slots, b.Total, b.Reason, tiny)
		}
		t.Logf("after %v: %v of %d: %s", time.Since(start).Round(time.Millisecond), b.Slots, b.Total, b.Reason)
		return nil
	})
	// It stays there while the model keeps failing.
	time.Sleep(2 * time.Second)
	if b, err := s.budget(t); err != nil || b.Slots[tiny] != 2 {
		t.Errorf("allocation %v (%v): the failing model took a slot back (%s)", b.Slots, err, b.Reason)
	}
	stop()
	wg.Wait()
	t.Logf("%d answers, %d errors; breaker %+v", ok.Load(), failed.Load(), s.opt.Breakers(time.Now()))
}
