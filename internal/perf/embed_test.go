package perf

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/wire"
)

// TestOllamaBenchEmbed is issue 14, item 6: embedding batching measured on
// the real Ollama. N callers each want one sentence embedded. Baseline: N
// /api/embed calls, all at once (what N agents do without herd).
// Measured: one /api/embed call with the N inputs (what herd's worker
// sends for a batch of compatible embed requests). The ratio is embeddings
// per second; the seed claims +200-300% (x3-x4), the goal here is x2. The
// same N callers through herd (cache off) show what reaches them.
func TestOllamaBenchEmbed(t *testing.T) {
	benchOnly(t)
	o := startBenchOllama(t)
	const callers, rounds, goal = 16, 8, 2.0
	ctx := t.Context()
	text := func(round, i int) string {
		return fmt.Sprintf("sentence %d of round %d: the herd walks to the river at dusk", i, round)
	}
	if _, err := o.direct.Embed(ctx, &api.EmbedRequest{Model: tiny, Input: "warm"}); err != nil {
		t.Fatal(err)
	}

	// N calls: each round, callers calls at once, one input each.
	start := time.Now()
	for round := range rounds {
		var wg sync.WaitGroup
		var failed atomic.Value
		for i := range callers {
			wg.Go(func() {
				if _, err := o.direct.Embed(ctx, &api.EmbedRequest{Model: tiny, Input: text(round, i)}); err != nil {
					failed.CompareAndSwap(nil, err)
				}
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatal(err)
		}
	}
	single := time.Since(start)

	// One call: each round, one call with every caller's input.
	start = time.Now()
	for round := range rounds {
		in := make([]string, callers)
		for i := range in {
			in[i] = text(round, i)
		}
		r, err := o.direct.Embed(ctx, &api.EmbedRequest{Model: tiny, Input: in})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Embeddings) != callers {
			t.Fatalf("%d embeddings for %d inputs", len(r.Embeddings), callers)
		}
	}
	batched := time.Since(start)

	// Through herd: the same callers, each its own request, cache off.
	c := startHerd(t, o.url, benchWorker(0))
	if _, _, err := c.Embed(ctx, &api.EmbedRequest{Model: tiny, Input: "warm"}); err != nil {
		t.Fatal(err)
	}
	var batchSum, answers atomic.Int64
	start = time.Now()
	for round := range rounds {
		var wg sync.WaitGroup
		var failed atomic.Value
		for i := range callers {
			wg.Go(func() {
				_, meta, err := c.Embed(ctx, &api.EmbedRequest{Model: tiny, Input: "herd " + text(round, i)}, client.Cache(wire.CacheOff))
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				batchSum.Add(int64(meta.BatchSize))
				answers.Add(1)
			})
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatal(err)
		}
	}
	viaHerd := time.Since(start)

	n := float64(callers * rounds)
	rate := func(d time.Duration) float64 { return n / d.Seconds() }
	var b strings.Builder
	fmt.Fprintf(&b, "\n(6) embedding batching: %d callers x %d rounds, one sentence each, %s on Ollama num_parallel %d\n", callers, rounds, tiny, benchParallel)
	fmt.Fprintf(&b, "  %-34s %12s %14s\n", "", "embeddings/s", "per round")
	fmt.Fprintf(&b, "  %-34s %12.1f %14v\n", fmt.Sprintf("direct, %d calls at once", callers), rate(single), (single / rounds).Round(time.Microsecond))
	fmt.Fprintf(&b, "  %-34s %12.1f %14v\n", fmt.Sprintf("direct, one call of %d inputs", callers), rate(batched), (batched / rounds).Round(time.Microsecond))
	fmt.Fprintf(&b, "  %-34s %12.1f %14v   mean batch %.1f\n", fmt.Sprintf("herd, %d callers (cache off)", callers), rate(viaHerd), (viaHerd / rounds).Round(time.Microsecond),
		float64(batchSum.Load())/float64(max(answers.Load(), 1)))
	ratio := rate(batched) / rate(single)
	fmt.Fprintf(&b, "  one call vs %d calls (same run): x%.2f (seed claims x3-x4); goal >= x%.0f: %s\n", callers, ratio, goal, metOrNot(ratio, goal))
	fmt.Fprintf(&b, "  herd vs %d direct calls: x%.2f\n", callers, rate(viaHerd)/rate(single))
	fmt.Print(b.String())
}
