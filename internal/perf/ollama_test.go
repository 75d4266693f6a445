package perf

import (
	"context"
	"errors"
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
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/testmodel"
	"github.com/sutazai/herd/internal/worker"
)

// benchParallel is OLLAMA_NUM_PARALLEL of the benchmark's Ollama and the
// slots of herd's worker, so both sides may run as many calls at once.
const benchParallel = 3

// tiny is the generated fast model every workload runs on.
var tiny = testmodel.Tiny.Name

// realOllama is the managed Ollama shared by the sub-benchmarks.
type realOllama struct {
	url    string
	log    string // the server's log, where model loads are counted
	direct *api.Client
}

// loads returns how many times Ollama has started a model runner so far.
func (o *realOllama) loads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(o.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "starting llama server")
}

// generate calls Ollama directly, without streaming, as an agent would
// without herd.
func (o *realOllama) generate(ctx context.Context, req *api.GenerateRequest) (api.GenerateResponse, error) {
	stream := false
	r := *req
	r.Stream = &stream
	var out api.GenerateResponse
	err := o.direct.Generate(ctx, &r, func(g api.GenerateResponse) error {
		out = g
		return nil
	})
	return out, err
}

// startHerd runs herd's dispatcher and one worker in-process on an
// embedded NATS server, calling the Ollama at ollamaURL, and returns an SDK
// client. Everything stops when the test ends.
func startHerd(t *testing.T, ollamaURL string, wc worker.Config) *client.Client {
	t.Helper()
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{})
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	dnc, _ := srv.Connect(t)
	d, err := dispatcher.New(t.Context(), dispatcher.DefaultConfig(), dnc, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	oc, err := ollama.NewClient(ollamaURL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wnc, _ := srv.Connect(t)
	w, err := worker.New(t.Context(), wc, wnc, oc, defs, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx) })
	wg.Go(func() { _ = w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(d.Models()) == 0 {
			return errors.New("no worker registered")
		}
		return nil
	})
	cnc, _ := srv.Connect(t)
	c, err := client.New(cnc, client.WithAgent("bench"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// benchWorker is the worker configuration every workload starts from: the
// same parallelism as Ollama, num_thread 1 as in the generated Modelfile
// (so herd's calls and direct calls load the model the same way), and one
// num_ctx for herd-tiny, its Modelfile's.
func benchWorker(reservedHigh int) worker.Config {
	wc := worker.DefaultConfig()
	wc.ID = "bench"
	wc.Slots = benchParallel
	wc.ReservedHighSlots = reservedHigh
	wc.CPUBudget = 1
	wc.NumCtx = map[string]int{tiny: testmodel.Tiny.Context}
	return wc
}

// TestOllamaBench compares the same workloads sent straight to a real
// Ollama and through herd, on one managed Ollama, and prints the ratios.
func TestOllamaBench(t *testing.T) {
	benchOnly(t)
	dir := t.TempDir()
	inst := harness.Ollama(t, managed.Config{Dir: dir, NumParallel: benchParallel, TestModels: []string{tiny}})
	u, err := url.Parse(inst.URL())
	if err != nil {
		t.Fatal(err)
	}
	o := &realOllama{
		url: inst.URL(),
		log: filepath.Join(dir, "ollama.log"),
		direct: api.NewClient(u, &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
		}}),
	}
	t.Run("num_ctx_mix", func(t *testing.T) { benchNumCtxMix(t, o) })
	t.Run("repeated_prompts", func(t *testing.T) { benchRepeats(t, o) })
	t.Run("high_priority_under_load", func(t *testing.T) { benchHighUnderLoad(t, o) })
}

// benchNumCtxMix sends requests cycling through three num_ctx values.
// Direct, Ollama reloads the model at each change; herd runs them all in
// the model's one num_ctx.
func benchNumCtxMix(t *testing.T, o *realOllama) {
	const n, callers = 60, 4
	ctx := t.Context()
	numCtx := []int{512, 1024, 2048}
	req := func(i int) *api.GenerateRequest {
		return &api.GenerateRequest{
			Model:   tiny,
			Prompt:  fmt.Sprintf("request %d of the num_ctx mix: the herd walks on", i),
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

	c := startHerd(t, o.url, benchWorker(0))
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
	fmt.Fprintf(&b, "\n(a) num_ctx mix: %d requests, num_ctx %v round-robin, num_predict 16, %d callers, %s on Ollama num_parallel %d\n",
		n, numCtx, callers, tiny, benchParallel)
	fmt.Fprintf(&b, "  %-8s %8s %10s %10s %12s\n", "", "req/s", "p50", "p95", "model loads")
	for _, r := range []struct {
		*result
		loads int
	}{{direct, directLoads}, {herd, herdLoads}} {
		fmt.Fprintf(&b, "  %-8s %8.1f %10v %10v %12d\n", r.name, r.throughput,
			r.pct(0.5).Round(time.Millisecond), r.pct(0.95).Round(time.Millisecond), r.loads)
	}
	fmt.Fprintf(&b, "  herd vs direct: throughput x%.2f, p50 x%.2f faster, p95 x%.2f faster\n",
		herd.throughput/direct.throughput, speedup(direct.pct(0.5), herd.pct(0.5)), speedup(direct.pct(0.95), herd.pct(0.95)))
	fmt.Print(b.String())
}

// benchRepeats sends a deterministic workload (temperature 0) in which 30%
// of the prompts come from a pool of three. Direct, Ollama computes every
// one; herd answers repeats from its cache or by coalescing.
func benchRepeats(t *testing.T, o *realOllama) {
	const n, callers = 60, 4
	ctx := t.Context()
	pool := []string{
		"the first repeated question about the herd",
		"the second repeated question about the herd",
		"the third repeated question about the herd",
	}
	prompts := make([]string, n)
	repeated := 0
	for i := range prompts {
		if i%10 == 2 || i%10 == 5 || i%10 == 8 {
			prompts[i] = pool[repeated%len(pool)]
			repeated++
			continue
		}
		prompts[i] = fmt.Sprintf("unique question %d about the herd", i)
	}
	req := func(i int) *api.GenerateRequest {
		return &api.GenerateRequest{Model: tiny, Prompt: prompts[i], Options: map[string]any{"num_predict": 128, "temperature": 0}}
	}
	if _, err := o.generate(ctx, &api.GenerateRequest{Model: tiny, Prompt: "warm", Options: map[string]any{"num_predict": 1}}); err != nil {
		t.Fatal(err)
	}
	var answers sync.Map // prompt -> direct answer
	direct, err := drive("direct", n, callers, func(_, i int) error {
		r, err := o.generate(ctx, req(i))
		answers.Store(prompts[i], r.Response)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	c := startHerd(t, o.url, benchWorker(0))
	if _, _, err := c.Generate(ctx, &api.GenerateRequest{Model: tiny, Prompt: "warm", Options: map[string]any{"num_predict": 1}}); err != nil {
		t.Fatal(err)
	}
	var hits, coalesced, misses, same, differ atomic.Int64
	herd, err := drive("herd", n, callers, func(_, i int) error {
		r, meta, err := c.Generate(ctx, req(i))
		if err != nil {
			return err
		}
		switch meta.Cache {
		case "hit":
			hits.Add(1)
		case "coalesced":
			coalesced.Add(1)
		default:
			misses.Add(1)
		}
		if want, _ := answers.Load(prompts[i]); want == r.Response {
			same.Add(1)
		} else {
			differ.Add(1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n(b) repeated prompts: %d requests, %d (%d%%) from a pool of %d, temperature 0, num_predict 128, %d callers\n",
		n, repeated, 100*repeated/n, len(pool), callers)
	fmt.Fprintf(&b, "  %-8s %8s %10s %10s\n", "", "req/s", "p50", "p95")
	for _, r := range []*result{direct, herd} {
		fmt.Fprintf(&b, "  %-8s %8.1f %10v %10v\n", r.name, r.throughput, r.pct(0.5).Round(time.Millisecond), r.pct(0.95).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "  herd: %d hit, %d coalesced, %d miss (Ollama calls saved: %d of %d); answers equal to direct's: %d of %d\n",
		hits.Load(), coalesced.Load(), misses.Load(), hits.Load()+coalesced.Load(), n, same.Load(), same.Load()+differ.Load())
	fmt.Fprintf(&b, "  herd vs direct: throughput x%.2f (Ollama calls direct/herd: x%.2f)\n",
		herd.throughput/direct.throughput, float64(n)/float64(n-repeated+len(pool)))
	fmt.Print(b.String())
}

// benchHighUnderLoad measures high-priority latency alone and while
// low-priority callers keep Ollama's every slot busy with long generations:
// direct, a high request queues behind them; through herd it takes the slot
// kept for high priority.
func benchHighUnderLoad(t *testing.T, o *realOllama) {
	const (
		highN       = 20
		highGap     = 50 * time.Millisecond
		highBudget  = 8 * time.Second
		background  = 2 * benchParallel
		bgPredict   = 200
		highPredict = 16
	)
	ctx := t.Context()
	high := func(i int) *api.GenerateRequest {
		return &api.GenerateRequest{Model: tiny, Prompt: fmt.Sprintf("urgent question %d", i),
			Options: map[string]any{"num_predict": highPredict, "temperature": 0.7}}
	}
	low := func(caller, i int) *api.GenerateRequest {
		return &api.GenerateRequest{Model: tiny, Prompt: fmt.Sprintf("background essay %d by caller %d", i, caller),
			Options: map[string]any{"num_predict": bgPredict, "temperature": 0.7}}
	}

	if _, err := o.generate(ctx, high(-1)); err != nil {
		t.Fatal(err)
	}
	directIdle := highSeries(t, "direct idle", highN, highGap, highBudget, func(i int) error {
		_, err := o.generate(ctx, high(i))
		return err
	})
	stop := loadWith(t, background, func(ctx context.Context, caller, i int) error {
		_, err := o.generate(ctx, low(caller, i))
		return err
	})
	directLoaded := highSeries(t, "direct loaded", highN, highGap, highBudget, func(i int) error {
		_, err := o.generate(ctx, high(i))
		return err
	})
	directBg := stop()

	c := startHerd(t, o.url, benchWorker(1))
	if _, _, err := c.Generate(ctx, high(-1), client.At(client.High)); err != nil {
		t.Fatal(err)
	}
	var queueMs, totalMs atomic.Int64
	herdIdle := highSeries(t, "herd idle", highN, highGap, highBudget, func(i int) error {
		_, meta, err := c.Generate(ctx, high(i), client.At(client.High))
		if err == nil {
			queueMs.Add(meta.QueueMs)
			totalMs.Add(meta.TotalMs)
		}
		return err
	})
	if os.Getenv("HERD_BENCH_DEBUG") != "" {
		fmt.Printf("herd idle high: mean queue %.1fms, mean total %.1fms, mean round trip %.1fms\n",
			float64(queueMs.Load())/float64(herdIdle.n), float64(totalMs.Load())/float64(herdIdle.n), float64(mean(herdIdle.lat))/1e6)
	}
	stop = loadWith(t, background, func(ctx context.Context, caller, i int) error {
		_, _, err := c.Generate(ctx, low(caller, i), client.At(client.Low))
		return err
	})
	herdLoaded := highSeries(t, "herd loaded", highN, highGap, highBudget, func(i int) error {
		_, _, err := c.Generate(ctx, high(i), client.At(client.High))
		return err
	})
	herdBg := stop()

	var b strings.Builder
	fmt.Fprintf(&b, "\n(c) high priority under load: high = %s num_predict %d, one caller, %v apart; load = %d low callers looping num_predict %d\n",
		tiny, highPredict, highGap, background, bgPredict)
	fmt.Fprintf(&b, "    Ollama num_parallel %d; herd worker slots %d, 1 reserved for high\n", benchParallel, benchParallel)
	fmt.Fprintf(&b, "  %-8s %5s %10s %10s %5s %11s %11s %13s %10s\n", "", "idle", "idle p50", "idle p95", "load", "loaded p50", "loaded p95", "p95 load/idle", "low req/s")
	for _, r := range []struct {
		name         string
		idle, loaded *result
		bg           float64
	}{{"direct", directIdle, directLoaded, directBg}, {"herd", herdIdle, herdLoaded, herdBg}} {
		fmt.Fprintf(&b, "  %-8s %5d %10v %10v %5d %11v %11v %13.2f %10.1f\n", r.name,
			r.idle.n, r.idle.pct(0.5).Round(time.Millisecond), r.idle.pct(0.95).Round(time.Millisecond),
			r.loaded.n, r.loaded.pct(0.5).Round(time.Millisecond), r.loaded.pct(0.95).Round(time.Millisecond),
			float64(r.loaded.pct(0.95))/float64(r.idle.pct(0.95)), r.bg)
	}
	fmt.Fprintf(&b, "  loaded high p95: herd x%.2f faster than direct\n", speedup(directLoaded.pct(0.95), herdLoaded.pct(0.95)))
	fmt.Print(b.String())
}

// highSeries sends up to n requests one after the other, gap apart, and
// stops early once budget has passed (a loaded direct Ollama can take
// seconds per request).
func highSeries(t *testing.T, name string, n int, gap, budget time.Duration, send func(i int) error) *result {
	t.Helper()
	r := &result{name: name}
	start := time.Now()
	for i := 0; i < n && time.Since(start) < budget; i++ {
		t0 := time.Now()
		if err := send(i); err != nil {
			t.Fatalf("%s: request %d: %v", name, i, err)
		}
		r.lat = append(r.lat, time.Since(t0))
		time.Sleep(gap)
	}
	r.n, r.elapsed = len(r.lat), time.Since(start)
	return r
}

// loadWith starts callers goroutines each sending requests one after the
// other until stopped, and returns once every caller has had at least one
// answered, so the load is established. stop cancels the requests in
// flight, waits for the callers and returns the answers per second.
func loadWith(t *testing.T, callers int, send func(ctx context.Context, caller, i int) error) (stop func() float64) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var done atomic.Int64
	var failed atomic.Value
	start := time.Now()
	for caller := range callers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if err := send(ctx, caller, i); err != nil {
					if ctx.Err() == nil {
						failed.CompareAndSwap(nil, err)
						cancel()
					}
					return
				}
				done.Add(1)
			}
		})
	}
	stop = func() float64 {
		el := time.Since(start)
		n := done.Load()
		cancel()
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatalf("background load: %v", err)
		}
		return float64(n) / el.Seconds()
	}
	natstest.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if err, _ := failed.Load().(error); err != nil {
			return err
		}
		if n := done.Load(); n < int64(callers) {
			return fmt.Errorf("background load: %d of %d answered", n, callers)
		}
		return nil
	})
	return stop
}

// speedup returns how many times shorter herd's latency is than direct's.
func speedup(direct, herd time.Duration) float64 {
	if herd <= 0 {
		return 0
	}
	return float64(direct) / float64(herd)
}

// mean returns the mean of ds.
func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
