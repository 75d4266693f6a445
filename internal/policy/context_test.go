package policy

import (
	"strings"
	"testing"
	"time"
)

// prompts returns n prompt sizes spread evenly over [lo, hi].
func prompts(n, lo, hi int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = lo + (hi-lo)*i/max(n-1, 1)
	}
	return out
}

func TestContextRound(t *testing.T) {
	tests := []struct {
		step, n, want int
	}{
		{0, 1, 1},
		{0, 2048, 2048},
		{0, 2049, 4096},
		{0, 3750, 4096},
		{0, 5000, 8192},
		{512, 1, 512},
		{512, 512, 512},
		{512, 513, 1024},
		{512, 3750, 4096},
		{512, 4125, 4608},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			if got := (ContextConfig{Step: tt.step}).round(tt.n); got != tt.want {
				t.Errorf("step %d round(%d) = %d, want %d", tt.step, tt.n, got, tt.want)
			}
		})
	}
}

func TestContextChoice(t *testing.T) {
	cfg := DefaultContextConfig()
	step512 := cfg
	step512.Step = 512
	bounded := cfg
	bounded.Models = []ModelContext{{Name: "m", MinNumCtx: 4096, MaxNumCtx: 8192}}
	tests := []struct {
		name    string
		cfg     ContextConfig
		in      ContextInput
		want    int
		changed bool
		reason  string
	}{
		{"small prompts: the minimum", cfg, ContextInput{PromptTokens: prompts(100, 50, 1000)}, 2048, true, "first"},
		{"p99 plus headroom, power of two", cfg, ContextInput{PromptTokens: prompts(100, 500, 3000)}, 4096, true, "first"},
		{"outliers above p99 do not count", cfg, ContextInput{PromptTokens: append(prompts(199, 500, 1500), 30000)}, 2048, true, "first"},
		{"multiple of 512", step512, ContextInput{PromptTokens: prompts(100, 500, 3400)}, 4608, true, "first"},
		{"capped at the maximum", cfg, ContextInput{PromptTokens: prompts(100, 30000, 40000)}, 32768, true, "first"},
		{"per-model minimum", bounded, ContextInput{PromptTokens: prompts(100, 10, 100)}, 4096, true, "first"},
		{"per-model maximum", bounded, ContextInput{PromptTokens: prompts(100, 10, 9000)}, 8192, true, "first"},
		{"no samples: the minimum", cfg, ContextInput{}, 2048, true, "first"},
		{"raised from the percentile", cfg, ContextInput{Current: 2048, PromptTokens: prompts(100, 500, 1800)}, 4096, true, "raised"},
		{"fits: no change", cfg, ContextInput{Current: 4096, PromptTokens: prompts(100, 500, 3000)}, 4096, false, "no change"},
		{"too few samples to raise", cfg, ContextInput{Current: 2048, PromptTokens: prompts(10, 1900, 2000)}, 2048, false, "fewer"},
		{"outside bounds: clamped", bounded, ContextInput{Current: 2048, PromptTokens: prompts(100, 10, 100)}, 4096, true, "bounds"},
		{"truncation doubles with few samples", cfg, ContextInput{Current: 2048, PromptTokens: []int{2048, 2048}, Truncated: 2}, 4096, true, "truncated"},
		{"truncation doubles even when p99 fits", cfg, ContextInput{Current: 4096, PromptTokens: prompts(100, 100, 1000), Truncated: 1}, 8192, true, "truncated"},
		{"truncation takes the percentile when larger", cfg, ContextInput{Current: 2048, PromptTokens: prompts(100, 1000, 7000), Truncated: 5}, 16384, true, "truncated"},
		{"truncation at the maximum", bounded, ContextInput{Current: 8192, PromptTokens: []int{8192}, Truncated: 1}, 8192, false, "largest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewContextSizer(tt.cfg).Evaluate(t0, "m", tt.in)
			if d.Value != tt.want || d.Changed != tt.changed {
				t.Errorf("num_ctx %d changed %v, want %d changed %v (reason %q)", d.Value, d.Changed, tt.want, tt.changed, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reason) || d.Kind != KindNumCtx || d.Model != "m" {
				t.Errorf("decision %+v: want kind num_ctx, model m, reason with %q", d, tt.reason)
			}
			if d.Numbers["prompts"] != float64(len(tt.in.PromptTokens)) || d.Numbers["truncated"] != float64(tt.in.Truncated) {
				t.Errorf("numbers %v do not carry the observations", d.Numbers)
			}
		})
	}
}

func TestContextLowersSlowly(t *testing.T) {
	cfg := DefaultContextConfig()     // lower to at most half, after 30m
	small := prompts(100, 100, 1500)  // p99 1486 -> 1858 -> 2048
	medium := prompts(100, 100, 1700) // p99 1684 -> 2105 -> 4096
	large := prompts(100, 100, 3000)  // p99 2971 -> 3714 -> 4096
	type step struct {
		at   time.Duration
		in   []int
		want int
	}
	m := time.Minute
	tests := []struct {
		name  string
		start int
		steps []step
	}{
		{"lowered after a sustained period", 8192, []step{
			{0, small, 8192},
			{10 * m, large, 8192}, // 4096 is half: still lower
			{29 * m, small, 8192},
			{30 * m, small, 4096}, // the largest value of the period
		}},
		{"an interruption restarts the wait", 8192, []step{
			{0, small, 8192},
			{20 * m, prompts(100, 4000, 6000), 8192},
			{25 * m, small, 8192},
			{50 * m, small, 8192},
			{55 * m, small, 2048},
		}},
		{"small changes do not flap", 4096, []step{
			{0, small, 4096},
			{10 * m, medium, 4096},
			{20 * m, small, 4096},
			{30 * m, large, 4096},
			{40 * m, small, 4096},
			{50 * m, medium, 4096},
			{60 * m, small, 4096},
			{70 * m, medium, 4096},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewContextSizer(cfg)
			cur := tt.start
			for i, st := range tt.steps {
				d := s.Evaluate(t0.Add(st.at), "m", ContextInput{Current: cur, PromptTokens: st.in})
				if d.Value != st.want || d.Changed != (st.want != cur) {
					t.Fatalf("step %d at %v: num_ctx %d changed %v, want %d (reason %q)", i, st.at, d.Value, d.Changed, st.want, d.Reason)
				}
				cur = d.Value
			}
		})
	}
}

func TestContextRaiseThenTruncationStops(t *testing.T) {
	// Long prompts truncated at 2048 raise num_ctx; once they fit, the
	// caller reports no more truncations and num_ctx stays.
	s := NewContextSizer(DefaultContextConfig())
	d := s.Evaluate(t0, "m", ContextInput{Current: 2048, PromptTokens: []int{2048, 2048, 900}, Truncated: 2})
	if d.Value != 4096 {
		t.Fatalf("num_ctx %d, want 4096 (reason %q)", d.Value, d.Reason)
	}
	d = s.Evaluate(t0.Add(time.Minute), "m", ContextInput{Current: 4096, PromptTokens: []int{3000, 3100, 900}})
	if d.Changed {
		t.Fatalf("changed again to %d (reason %q)", d.Value, d.Reason)
	}
}
