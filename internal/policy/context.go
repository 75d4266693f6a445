package policy

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// Bounds of any num_ctx, as internal/config accepts them.
const (
	minNumCtx = 256
	maxNumCtx = 1 << 20
)

// ContextConfig is the context-window policy: one num_ctx per model, from
// the prompt sizes it sees.
type ContextConfig struct {
	// Percentile is the share of prompts (0 to 1] that must fit the window
	// with its headroom. Default 0.99.
	Percentile float64 `koanf:"percentile"`
	// Headroom is added to the percentile before rounding: 0.25 means 25%
	// more. Default 0.25.
	Headroom float64 `koanf:"headroom"`
	// Step rounds num_ctx up to a multiple of Step tokens; 0 rounds up to a
	// power of two. Default 0.
	Step int `koanf:"step"`
	// MinSamples is how many prompts the percentile needs before it raises
	// or lowers num_ctx; truncations raise it with fewer. Default 50.
	MinSamples int `koanf:"min_samples"`
	// MinNumCtx is the smallest num_ctx of a model not listed in Models.
	// Default 2048.
	MinNumCtx int `koanf:"min_num_ctx"`
	// MaxNumCtx is the largest num_ctx of a model not listed in Models.
	// Default 32768.
	MaxNumCtx int `koanf:"max_num_ctx"`
	// LowerRatio: num_ctx is lowered only when the new value is at most
	// this share of the current one (0 to 1), because every change reloads
	// the model. Default 0.5.
	LowerRatio float64 `koanf:"lower_ratio"`
	// LowerAfter is how long every evaluation must have found a value that
	// low before num_ctx is lowered. Default 30m.
	LowerAfter time.Duration `koanf:"lower_after"`
	// Models overrides MinNumCtx and MaxNumCtx for the models listed.
	// Default none.
	Models []ModelContext `koanf:"models"`
}

// ModelContext are one model's num_ctx bounds.
type ModelContext struct {
	// Name is the model as Ollama names it. Required.
	Name string `koanf:"name"`
	// MinNumCtx is the model's smallest num_ctx. Required.
	MinNumCtx int `koanf:"min_num_ctx"`
	// MaxNumCtx is the model's largest num_ctx, usually its trained
	// context length. Required.
	MaxNumCtx int `koanf:"max_num_ctx"`
}

// DefaultContextConfig returns the defaults.
func DefaultContextConfig() ContextConfig {
	return ContextConfig{
		Percentile: 0.99,
		Headroom:   0.25,
		MinSamples: 50,
		MinNumCtx:  2048,
		MaxNumCtx:  32768,
		LowerRatio: 0.5,
		LowerAfter: 30 * time.Minute,
	}
}

// Validate reports a setting that cannot work.
func (c ContextConfig) Validate() error {
	var errs []error
	if !(c.Percentile > 0 && c.Percentile <= 1) {
		errs = append(errs, errors.New("policy: context: percentile must be above 0 and at most 1"))
	}
	if c.Headroom < 0 {
		errs = append(errs, errors.New("policy: context: headroom must not be negative"))
	}
	if c.Step < 0 || c.Step > maxNumCtx {
		errs = append(errs, fmt.Errorf("policy: context: step must be 0 (powers of two) to %d", maxNumCtx))
	}
	if c.MinSamples < 1 {
		errs = append(errs, errors.New("policy: context: min_samples must be at least 1"))
	}
	if !validNumCtx(c.MinNumCtx, c.MaxNumCtx) {
		errs = append(errs, fmt.Errorf("policy: context: min_num_ctx and max_num_ctx must be %d to %d, min_num_ctx at most max_num_ctx", minNumCtx, maxNumCtx))
	}
	if !(c.LowerRatio > 0 && c.LowerRatio < 1) {
		errs = append(errs, errors.New("policy: context: lower_ratio must be above 0 and below 1"))
	}
	if c.LowerAfter < 0 {
		errs = append(errs, errors.New("policy: context: lower_after must not be negative"))
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("policy: context: models[%d]: name is required", i))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("policy: context: models[%d]: name %q is listed twice", i, m.Name))
		}
		seen[m.Name] = true
		if !validNumCtx(m.MinNumCtx, m.MaxNumCtx) {
			errs = append(errs, fmt.Errorf("policy: context: models[%d]: min_num_ctx and max_num_ctx of %q must be %d to %d, min_num_ctx at most max_num_ctx", i, m.Name, minNumCtx, maxNumCtx))
		}
	}
	return errors.Join(errs...)
}

func validNumCtx(lo, hi int) bool {
	return lo >= minNumCtx && hi <= maxNumCtx && lo <= hi
}

// bounds returns model's smallest and largest num_ctx.
func (c ContextConfig) bounds(model string) (lo, hi int) {
	for _, m := range c.Models {
		if m.Name == model {
			return m.MinNumCtx, m.MaxNumCtx
		}
	}
	return c.MinNumCtx, c.MaxNumCtx
}

// round returns n rounded up to a multiple of Step, or to a power of two.
func (c ContextConfig) round(n int) int {
	n = max(n, 1)
	if c.Step > 0 {
		return (n + c.Step - 1) / c.Step * c.Step
	}
	return 1 << bits.Len(uint(n-1))
}

// ContextInput is one model's observations over the optimizer's window.
type ContextInput struct {
	// Current is the model's num_ctx now; 0 when it has none yet.
	Current int
	// PromptTokens are the prompt sizes of the window's requests, in any
	// order. The slice is not modified.
	PromptTokens []int
	// Truncated counts the window's prompts that filled the window they
	// ran with (prompt tokens reaching num_ctx). Count only requests that
	// ran with Current, or a raise is repeated.
	Truncated int
}

// ContextSizer chooses one num_ctx per model: the Percentile of prompt
// sizes plus Headroom, rounded up, within the model's bounds. It raises at
// once (and to at least twice Current when prompts were truncated), and
// lowers only when the choice has stayed at most LowerRatio of Current for
// LowerAfter, to the largest choice seen meanwhile. It is not safe for
// concurrent use.
type ContextSizer struct {
	cfg    ContextConfig
	models map[string]*contextState
}

// contextState is one model's wait to lower num_ctx.
type contextState struct {
	// lowSince is when every evaluation began to find a value at most
	// LowerRatio of Current; zero when the last one did not.
	lowSince time.Time
	// lowMax is the largest such value since lowSince.
	lowMax int
}

// NewContextSizer returns a sizer with no history. cfg must be valid.
func NewContextSizer(cfg ContextConfig) *ContextSizer {
	return &ContextSizer{cfg: cfg, models: map[string]*contextState{}}
}

// Forget drops model's history, for a model no longer served.
func (s *ContextSizer) Forget(model string) { delete(s.models, model) }

// Evaluate decides model's num_ctx at now.
func (s *ContextSizer) Evaluate(now time.Time, model string, in ContextInput) Decision[int] {
	lo, hi := s.cfg.bounds(model)
	n := len(in.PromptTokens)
	p := Percentile(in.PromptTokens, s.cfg.Percentile)
	choice := clamp(s.cfg.round(int(math.Ceil(float64(p)*(1+s.cfg.Headroom)))), lo, hi)
	trusted := n >= s.cfg.MinSamples
	cur := in.Current

	st := s.models[model]
	if st == nil {
		st = &contextState{}
		s.models[model] = st
	}
	waiting := func() { st.lowSince, st.lowMax = time.Time{}, 0 }

	next, reason := cur, ""
	switch {
	case cur <= 0:
		next = lo
		if trusted {
			next = choice
		}
		reason = fmt.Sprintf("first num_ctx %d from %d prompts (p%s %d)", next, n, pct(s.cfg.Percentile), p)
		waiting()
	case cur < lo || cur > hi:
		next = clamp(cur, lo, hi)
		reason = fmt.Sprintf("num_ctx %d is outside the model's bounds [%d, %d]", cur, lo, hi)
		waiting()
	case in.Truncated > 0:
		next = clamp(s.cfg.round(max(2*cur, choice)), lo, hi)
		if next > cur {
			reason = fmt.Sprintf("raised from %d to %d: %d prompts were truncated", cur, next, in.Truncated)
		} else {
			reason = fmt.Sprintf("no change: %d prompts were truncated but %d is the model's largest num_ctx", in.Truncated, hi)
		}
		waiting()
	case !trusted:
		reason = fmt.Sprintf("no change: %d prompts, fewer than the %d needed", n, s.cfg.MinSamples)
		waiting()
	case choice > cur:
		next = choice
		reason = fmt.Sprintf("raised from %d to %d: p%s of %d prompts is %d tokens", cur, next, pct(s.cfg.Percentile), n, p)
		waiting()
	case float64(choice) <= s.cfg.LowerRatio*float64(cur):
		if st.lowSince.IsZero() {
			st.lowSince = now
		}
		st.lowMax = max(st.lowMax, choice)
		if low := now.Sub(st.lowSince); low >= s.cfg.LowerAfter {
			next = st.lowMax
			reason = fmt.Sprintf("lowered from %d to %d: p%s of prompts stayed at most %d tokens for %s", cur, next, pct(s.cfg.Percentile), p, low)
			waiting()
		} else {
			reason = fmt.Sprintf("no change: %d would do, lowered after %s more", st.lowMax, s.cfg.LowerAfter-low)
		}
	default:
		reason = fmt.Sprintf("no change: p%s of %d prompts is %d tokens, %d fits", pct(s.cfg.Percentile), n, p, cur)
		waiting()
	}
	return Decision[int]{
		Kind:    KindNumCtx,
		Model:   model,
		Value:   next,
		Changed: next != cur,
		Reason:  reason,
		Numbers: map[string]float64{
			"num_ctx":           float64(cur),
			"prompts":           float64(n),
			"prompt_tokens_pct": float64(p),
			"prompt_tokens_max": float64(slices.Max(append([]int{0}, in.PromptTokens...))),
			"percentile":        s.cfg.Percentile,
			"headroom":          s.cfg.Headroom,
			"choice":            float64(choice),
			"truncated":         float64(in.Truncated),
			"min_num_ctx":       float64(lo),
			"max_num_ctx":       float64(hi),
		},
	}
}

// pct formats a quantile as a percentile number: 0.99 -> "99", 0.995 -> "99.5".
func pct(q float64) string { return fmt.Sprintf("%g", math.Round(q*1000)/10) }
