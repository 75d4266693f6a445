package window

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

// t0 is on a minute boundary, so slices of 5s start at t0.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newWindows(t *testing.T, mut func(*Config)) *Windows {
	t.Helper()
	cfg := DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func ok(at time.Time, model string, p wire.Priority, total time.Duration) Obs {
	return Obs{At: at, Model: model, Priority: p, Total: total, Status: 200, Cache: wire.CacheMiss}
}

// quantile is HDR's rank rule on exact samples: the value at rank
// round(p/100*n), at least 1.
func quantile(sorted []int64, p float64) int64 {
	r := max(int(p/100*float64(len(sorted))+0.5), 1)
	return sorted[r-1]
}

func within(t *testing.T, name string, got, want time.Duration, figures int) {
	t.Helper()
	tol := time.Duration(float64(want)*math.Pow10(-figures)) + time.Microsecond
	if d := got - want; d < -tol || d > tol {
		t.Errorf("%s = %v, want %v ± %v", name, got, want, tol)
	}
}

func TestPercentilesOfKnownDistributions(t *testing.T) {
	uniform := func(i, n int) time.Duration { return time.Duration(i+1) * time.Millisecond }
	tests := []struct {
		name    string
		n       int
		figures int
		value   func(i, n int) time.Duration
	}{
		{"uniform 1..1000ms, 2 figures", 1000, 2, uniform},
		{"uniform 1..1000ms, 3 figures", 1000, 3, uniform},
		{"constant 250ms", 200, 2, func(int, int) time.Duration { return 250 * time.Millisecond }},
		{"bimodal 90% 10ms, 10% 2s", 1000, 3, func(i, n int) time.Duration {
			if i%10 == 9 {
				return 2 * time.Second
			}
			return 10 * time.Millisecond
		}},
		{"long tail up to 4min", 500, 2, func(i, n int) time.Duration {
			return time.Duration(math.Pow(1.025, float64(i))) * time.Millisecond
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindows(t, func(c *Config) { c.SignificantFigures = tt.figures })
			var total, queue []int64
			for i := range tt.n {
				// Spread over 50s of the window, shuffled so order does not help.
				j := (i * 7919) % tt.n
				o := ok(t0.Add(time.Duration(j)*50*time.Second/time.Duration(tt.n)), "m", wire.High, tt.value(j, tt.n))
				o.QueueWait = o.Total / 4
				w.Observe(o)
				total = append(total, int64(o.Total))
				queue = append(queue, int64(o.QueueWait))
			}
			slices.Sort(total)
			slices.Sort(queue)
			st := w.Stats(Key{Model: "m"}, t0.Add(55*time.Second))
			if st.Count != int64(tt.n) || st.Served != int64(tt.n) {
				t.Fatalf("count %d served %d, want %d", st.Count, st.Served, tt.n)
			}
			for _, q := range []struct {
				name string
				got  time.Duration
				of   []int64
				p    float64
			}{
				{"total p50", st.Total.P50, total, 50}, {"total p95", st.Total.P95, total, 95},
				{"total p99", st.Total.P99, total, 99}, {"total max", st.Total.Max, total, 100},
				{"queue p50", st.QueueWait.P50, queue, 50}, {"queue p95", st.QueueWait.P95, queue, 95},
				{"queue p99", st.QueueWait.P99, queue, 99},
			} {
				within(t, q.name, q.got, time.Duration(quantile(q.of, q.p)), tt.figures)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	// One observation in each of the first three 5s slices.
	w := newWindows(t, nil)
	for i := range 3 {
		w.Observe(ok(t0.Add(time.Duration(i)*5*time.Second+time.Second), "m", wire.Normal, 100*time.Millisecond))
	}
	tests := []struct {
		at   time.Duration
		want int64
	}{
		{0, 1}, // a slice counts as a whole: at t0 it holds the observation made at t0+1s
		{time.Second, 1},
		{12 * time.Second, 3},
		{59*time.Second + 999*time.Millisecond, 3}, // first slice still the oldest of 12
		{60 * time.Second, 2},                      // first slice expired: window is 60s
		{65 * time.Second, 1},
		{70 * time.Second, 0},
		{time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.at), func(t *testing.T) {
			st := w.Stats(Key{}, t0.Add(tt.at))
			if st.Count != tt.want {
				t.Errorf("count at +%v = %d, want %d", tt.at, st.Count, tt.want)
			}
			if tt.want == 0 && (st.Total != Latency{}) {
				t.Errorf("latency of an expired window = %+v, want zero", st.Total)
			}
		})
	}
}

func TestSliceReuseAfterExpiry(t *testing.T) {
	// An observation a whole window later lands in the same slot and must
	// not inherit the old slice's counts or histograms.
	w := newWindows(t, nil)
	w.Observe(ok(t0.Add(time.Second), "m", wire.High, time.Second))
	w.Observe(ok(t0.Add(61*time.Second), "m", wire.High, 10*time.Millisecond))
	st := w.Stats(Key{}, t0.Add(62*time.Second))
	if st.Count != 1 || st.Total.Max > 11*time.Millisecond {
		t.Fatalf("count %d max %v, want 1 and 10ms", st.Count, st.Total.Max)
	}
}

func TestRates(t *testing.T) {
	w := newWindows(t, nil)
	// 120 observations over the 60s window, one every 500ms:
	// every 4th failed (backend_unavailable), every 10th rejected
	// (queue_full), every 6th a cache hit; each that ran had 50 eval tokens
	// in 250ms of Ollama time.
	var want struct{ rejected, failed, hits, misses, ran int64 }
	for i := range 120 {
		o := ok(t0.Add(time.Duration(i)*500*time.Millisecond), "m", wire.Low, 300*time.Millisecond)
		o.EvalTokens, o.PromptTokens, o.Ollama = 50, 10, 250*time.Millisecond
		switch {
		case i%10 == 0:
			o.Status, o.Code, o.Cache, o.EvalTokens, o.PromptTokens, o.Ollama = 429, wire.CodeQueueFull, "", 0, 0, 0
			want.rejected++
		case i%4 == 1:
			o.Status, o.Code, o.Cache, o.EvalTokens, o.PromptTokens, o.Ollama = 503, wire.CodeBackendUnavailable, "", 0, 0, 0
			o.FromWorker = true
			want.failed++
		case i%6 == 3:
			o.Cache, o.Ollama = wire.CacheHit, 0
			want.hits++
		default:
			want.misses++
			want.ran++
		}
		w.Observe(o)
	}
	now := t0.Add(60*time.Second - time.Nanosecond) // the whole window, span just under 60s
	st := w.Stats(Key{Model: "m", Priority: wire.Low}, now)
	span := now.Sub(t0)
	served := 120 - want.rejected
	if st.Span != span {
		t.Errorf("span %v, want %v", st.Span, span)
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"count", float64(st.Count), 120},
		{"rejected", float64(st.Rejected), float64(want.rejected)},
		{"served", float64(st.Served), float64(served)},
		{"errors", float64(st.Errors), float64(want.failed)},
		{"ran", float64(st.Ran), float64(want.ran)},
		{"error rate", st.ErrorRate, float64(want.failed) / float64(served)},
		{"throughput", st.Throughput, float64(served) / span.Seconds()},
		{"tokens/s", st.TokensPerSecond, float64(50*want.ran) / span.Seconds()},
		{"generation rate", st.GenerationRate, 200},
		{"hit ratio", st.Cache.HitRatio, float64(want.hits) / float64(want.hits+want.misses)},
		{"ollama mean ms", float64(st.OllamaMean.Milliseconds()), 250},
		{"mean gap ms", float64(st.MeanGap.Milliseconds()), 500},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEmptyWindow(t *testing.T) {
	w := newWindows(t, nil)
	w.Observe(ok(t0, "other", wire.High, time.Second))
	tests := []struct {
		key Key
		at  time.Duration
	}{
		{Key{}, time.Hour},                                    // everything expired
		{Key{Model: "m"}, 0},                                  // never seen
		{Key{Model: "m", Priority: wire.High}, 0},             // never seen
		{Key{Model: "other", Priority: wire.Low}, 0},          // another priority of a seen model
		{Key{Model: "other", Priority: wire.High}, time.Hour}, // expired
	}
	for _, tt := range tests {
		k := tt.key
		st := w.Stats(k, t0.Add(tt.at))
		if st != (Stats{Span: st.Span}) {
			t.Errorf("%+v: stats %+v, want zero", k, st)
		}
		if st.Span <= 0 || st.Span > time.Minute {
			t.Errorf("%+v: span %v", k, st.Span)
		}
	}
	if keys := w.Keys(t0.Add(time.Hour)); len(keys) != 0 {
		t.Errorf("keys of expired windows %v", keys)
	}
}

func TestPromptTokensAndTruncation(t *testing.T) {
	w := newWindows(t, func(c *Config) { c.SignificantFigures = 3 })
	// Prompts 1..2048 tokens in num_ctx 2048: 2044..2048 are truncated.
	var prompts []int64
	for i := 1; i <= 2048; i++ {
		o := ok(t0.Add(time.Duration(i)*10*time.Millisecond), "m", wire.Normal, time.Second)
		o.PromptTokens, o.NumCtx = i, 2048
		w.Observe(o)
		prompts = append(prompts, int64(i))
	}
	// A cache hit with a huge prompt does not count: it did not run.
	hit := ok(t0.Add(time.Second), "m", wire.Normal, time.Millisecond)
	hit.Cache, hit.PromptTokens, hit.NumCtx = wire.CacheHit, 100000, 2048
	w.Observe(hit)
	st := w.Stats(Key{Model: "m"}, t0.Add(30*time.Second))
	if st.Truncated != 5 {
		t.Errorf("truncated %d, want 5", st.Truncated)
	}
	if st.MaxNumCtx != 2048 {
		t.Errorf("max num_ctx %d, want 2048", st.MaxNumCtx)
	}
	for _, q := range []struct {
		name string
		got  int64
		p    float64
	}{{"p50", st.Prompt.P50, 50}, {"p95", st.Prompt.P95, 95}, {"p99", st.Prompt.P99, 99}, {"max", st.Prompt.Max, 100}} {
		want := quantile(prompts, q.p)
		if d := q.got - want; d < -2 || d > 2 {
			t.Errorf("prompt %s = %d, want %d ± 2", q.name, q.got, want)
		}
	}
}

func TestObsClasses(t *testing.T) {
	tests := []struct {
		name                         string
		o                            Obs
		rejected, failed, ran, trunc bool
	}{
		{"ok", Obs{Status: 200, Cache: wire.CacheMiss}, false, false, true, false},
		{"status 0 is ok", Obs{}, false, false, true, false},
		{"cache hit", Obs{Status: 200, Cache: wire.CacheHit}, false, false, false, false},
		{"coalesced", Obs{Status: 200, Cache: wire.CacheCoalesced}, false, false, false, false},
		{"queue full", Obs{Status: 429, Code: wire.CodeQueueFull}, true, false, false, false},
		{"breaker open", Obs{Status: 503, Code: wire.CodeBreakerOpen}, true, false, false, false},
		{"backend unavailable", Obs{Status: 503, Code: wire.CodeBackendUnavailable}, false, true, false, false},
		{"backend failed after a call", Obs{Status: 503, Code: wire.CodeBackendUnavailable, Ollama: time.Second}, false, true, true, false},
		{"internal", Obs{Status: 500, Code: wire.CodeInternal}, false, true, false, false},
		{"bare 502", Obs{Status: 502}, false, true, false, false},
		{"deadline", Obs{Status: 504, Code: wire.CodeDeadlineExceeded}, false, false, false, false},
		{"canceled", Obs{Status: 499, Code: wire.CodeCanceled}, false, false, false, false},
		{"bad input", Obs{Status: 400, Code: wire.CodeInvalidRequest}, false, false, false, false},
		{"unknown model at dispatcher", Obs{Status: 404, Code: wire.CodeModelNotFound}, false, false, false, false},
		{"model missing in ollama", Obs{Status: 404, Code: wire.CodeModelNotFound, FromWorker: true}, false, true, false, false},
		{"truncated", Obs{Status: 200, PromptTokens: 2044, NumCtx: 2048}, false, false, true, true},
		{"just below", Obs{Status: 200, PromptTokens: 2043, NumCtx: 2048}, false, false, true, false},
		{"num_ctx unknown", Obs{Status: 200, PromptTokens: 9000}, false, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.Rejected(); got != tt.rejected {
				t.Errorf("Rejected() = %v", got)
			}
			if got := tt.o.Failed(); got != tt.failed {
				t.Errorf("Failed() = %v", got)
			}
			if got := tt.o.Ran(); got != tt.ran {
				t.Errorf("Ran() = %v", got)
			}
			if got := tt.o.Truncated(); got != tt.trunc {
				t.Errorf("Truncated() = %v", got)
			}
		})
	}
}

func TestManyKeys(t *testing.T) {
	w := newWindows(t, nil)
	const models = 40
	for m := range models {
		for pi, p := range wire.Priorities {
			// Key (m, p) sees m+1 requests of (m+1)*10ms + pi*1ms.
			for i := 0; i <= m; i++ {
				d := time.Duration(m+1)*10*time.Millisecond + time.Duration(pi)*time.Millisecond
				w.Observe(ok(t0.Add(time.Duration(i)*100*time.Millisecond), fmt.Sprintf("model-%02d", m), p, d))
			}
		}
	}
	now := t0.Add(10 * time.Second)
	keys := w.Keys(now)
	if len(keys) != models*3 {
		t.Fatalf("%d keys, want %d", len(keys), models*3)
	}
	if keys[0] != (Key{"model-00", wire.High}) || keys[1] != (Key{"model-00", wire.Normal}) || keys[len(keys)-1] != (Key{"model-39", wire.Low}) {
		t.Errorf("keys not sorted: %v ... %v", keys[:3], keys[len(keys)-1])
	}
	for m := range models {
		name := fmt.Sprintf("model-%02d", m)
		for pi, p := range wire.Priorities {
			st := w.Stats(Key{name, p}, now)
			want := time.Duration(m+1)*10*time.Millisecond + time.Duration(pi)*time.Millisecond
			if st.Count != int64(m+1) {
				t.Fatalf("%s/%s count %d, want %d", name, p, st.Count, m+1)
			}
			within(t, name+"/"+string(p)+" p50", st.Total.P50, want, 2)
		}
		if st := w.Stats(Key{Model: name}, now); st.Count != int64(3*(m+1)) {
			t.Errorf("%s over all priorities: count %d, want %d", name, st.Count, 3*(m+1))
		}
	}
	if st := w.Stats(Key{Priority: wire.High}, now); st.Count != models*(models+1)/2 {
		t.Errorf("high over all models: count %d", st.Count)
	}
	if st := w.Stats(Key{}, now); st.Count != 3*models*(models+1)/2 {
		t.Errorf("everything: count %d", st.Count)
	}
}

func TestArrivals(t *testing.T) {
	w := newWindows(t, func(c *Config) { c.Retention = 10 * time.Minute })
	if _, found := w.Arrivals("m"); found {
		t.Fatal("arrivals of an unseen model")
	}
	// Every 2s for a minute, over two priorities.
	for i := range 30 {
		p := wire.High
		if i%2 == 1 {
			p = wire.Low
		}
		w.Observe(ok(t0.Add(time.Duration(i)*2*time.Second), "m", p, time.Second))
	}
	// An out-of-order observation does not make a negative gap.
	w.Observe(ok(t0.Add(57*time.Second), "m", wire.High, time.Second))
	a, found := w.Arrivals("m")
	if !found || a.Count != 31 || a.Gap != 2*time.Second || !a.Last.Equal(t0.Add(58*time.Second)) {
		t.Errorf("arrivals %+v, want 31 with gap 2s, last +58s", a)
	}
	// The model's mean gap across priorities comes from the window.
	if st := w.Stats(Key{Model: "m"}, t0.Add(59*time.Second)); st.MeanGap != 58*time.Second/30 {
		t.Errorf("mean gap %v, want %v", st.MeanGap, 58*time.Second/30)
	}
	// The gap average moves a quarter of the way to a new gap of 10s.
	w.Observe(ok(t0.Add(68*time.Second), "m", wire.High, time.Second))
	if a, _ = w.Arrivals("m"); a.Gap != 4*time.Second {
		t.Errorf("gap after a 10s gap = %v, want 4s", a.Gap)
	}
	// Kept beyond the window, forgotten after Retention without news.
	w.Advance(t0.Add(5 * time.Minute))
	if _, found = w.Arrivals("m"); !found {
		t.Error("arrivals forgotten within retention")
	}
	w.Advance(t0.Add(68*time.Second + 10*time.Minute + time.Second))
	if _, found = w.Arrivals("m"); found {
		t.Error("arrivals kept after retention")
	}
}

func TestLateObservation(t *testing.T) {
	w := newWindows(t, nil)
	if !w.Observe(ok(t0.Add(2*time.Minute), "m", wire.High, time.Second)) {
		t.Fatal("first observation refused")
	}
	if w.Observe(ok(t0, "m", wire.High, time.Second)) {
		t.Error("observation two minutes late accepted")
	}
	if !w.Observe(ok(t0.Add(90*time.Second), "m", wire.High, time.Second)) {
		t.Error("observation 30s late, within the window, refused")
	}
	// Another key has its own window.
	if !w.Observe(ok(t0, "n", wire.High, time.Second)) {
		t.Error("first observation of another key refused")
	}
	if w.Observe(ok(time.Time{}, "m", wire.High, time.Second)) {
		t.Error("observation without a time accepted")
	}
	if w.Late() != 2 {
		t.Errorf("late %d, want 2", w.Late())
	}
	if st := w.Stats(Key{Model: "m"}, t0.Add(2*time.Minute)); st.Count != 2 {
		t.Errorf("count %d, want 2", st.Count)
	}
}

func TestQueueGauges(t *testing.T) {
	w := newWindows(t, nil)
	high := Key{Priority: wire.High}
	if _, found := w.Queue(high, t0); found {
		t.Fatal("gauge before it was set")
	}
	w.SetQueue(high, 7, 2*time.Second, t0)
	w.SetQueue(Key{Priority: wire.Low}, 0, 0, t0)
	tests := []struct {
		key   Key
		at    time.Duration
		depth int
		age   time.Duration
		found bool
	}{
		{high, 0, 7, 2 * time.Second, true},
		{high, 3 * time.Second, 7, 5 * time.Second, true},  // the oldest keeps ageing
		{Key{Priority: wire.Low}, time.Minute, 0, 0, true}, // an empty queue has no age
		{Key{Priority: wire.Normal}, 0, 0, 0, false},
		{Key{Model: "m", Priority: wire.High}, 0, 0, 0, false}, // no wildcard for gauges
	}
	for _, tt := range tests {
		g, found := w.Queue(tt.key, t0.Add(tt.at))
		if found != tt.found || g.Depth != tt.depth || g.Age != tt.age {
			t.Errorf("%+v at +%v: %+v %v, want depth %d age %v %v", tt.key, tt.at, g, found, tt.depth, tt.age, tt.found)
		}
	}
	w.SetQueue(high, 1, 0, t0.Add(time.Second))
	if g, _ := w.Queue(high, t0.Add(time.Second)); g.Depth != 1 || g.Age != 0 {
		t.Errorf("gauge not replaced: %+v", g)
	}
	w.Advance(t0.Add(2 * time.Hour))
	if _, found := w.Queue(high, t0.Add(2*time.Hour)); found {
		t.Error("gauge kept after retention")
	}
}

func TestAdvanceReleasesAndKeepsWorking(t *testing.T) {
	w := newWindows(t, nil)
	w.Observe(ok(t0, "m", wire.High, time.Second))
	w.Advance(t0.Add(2 * time.Minute))
	if s := w.series[Key{"m", wire.High}]; s == nil || s.slices != nil {
		t.Fatalf("idle key not released: %+v", s)
	}
	w.Observe(ok(t0.Add(2*time.Minute), "m", wire.High, 3*time.Second))
	if st := w.Stats(Key{Model: "m"}, t0.Add(2*time.Minute)); st.Count != 1 || st.Total.P50 < 2900*time.Millisecond {
		t.Errorf("after release: %+v", st)
	}
	w.Advance(t0.Add(3 * time.Hour))
	if len(w.series) != 0 || len(w.arrivals) != 0 {
		t.Errorf("keys kept after retention: %d series, %d models", len(w.series), len(w.arrivals))
	}
}

func TestClamping(t *testing.T) {
	w := newWindows(t, nil)
	o := ok(t0, "m", wire.High, time.Hour) // above the 10min range
	o.QueueWait = -time.Second
	o.PromptTokens = 1 << 30
	w.Observe(o)
	st := w.Stats(Key{}, t0)
	if st.Count != 1 || st.Total.Max < 9*time.Minute || st.QueueWait.Max != 0 || st.Prompt.Max < 1_900_000 {
		t.Errorf("clamped values lost: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"one bucket", func(c *Config) { c.Buckets = 1 }, true},
		{"no buckets", func(c *Config) { c.Buckets = 0 }, false},
		{"window too short", func(c *Config) { c.Window = time.Millisecond }, false},
		{"zero figures", func(c *Config) { c.SignificantFigures = 0 }, false},
		{"six figures", func(c *Config) { c.SignificantFigures = 6 }, false},
		{"retention below window", func(c *Config) { c.Retention = time.Second }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mut(&cfg)
			_, err := New(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	w := newWindows(t, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				w.Observe(ok(at, fmt.Sprint("m", g), wire.High, time.Millisecond))
				if i%50 == 0 {
					w.Stats(Key{}, at)
					w.SetQueue(Key{Priority: wire.High}, i, 0, at)
					w.Advance(at)
				}
			}
		})
	}
	wg.Wait()
	if st := w.Stats(Key{}, t0.Add(5*time.Second)); st.Count != 2000 {
		t.Errorf("count %d, want 2000", st.Count)
	}
}

func TestHistogramTopsRecordable(t *testing.T) {
	// Clamped values land on the top of the range; every precision must
	// accept them or they would be dropped silently.
	for figures := 1; figures <= 5; figures++ {
		w := newWindows(t, func(c *Config) { c.SignificantFigures = figures })
		if err := w.latencyHist().RecordValue(maxLatencyMicros); err != nil {
			t.Errorf("%d figures: latency top: %v", figures, err)
		}
		if err := w.promptHist().RecordValue(maxPromptTokens); err != nil {
			t.Errorf("%d figures: prompt top: %v", figures, err)
		}
	}
}
