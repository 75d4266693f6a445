package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// WarmthConfig is the warmth policy: how long models stay loaded, which are
// preloaded, and which are unloaded when memory is tight.
type WarmthConfig struct {
	// GapPercentile is the share of inter-arrival gaps (0 to 1] that
	// keep_alive must cover before the factor. Default 0.95.
	GapPercentile float64 `koanf:"gap_percentile"`
	// GapFactor multiplies that gap to give keep_alive. Default 2.
	GapFactor float64 `koanf:"gap_factor"`
	// MinGaps is how many gaps are needed before keep_alive follows them.
	// Default 10.
	MinGaps int `koanf:"min_gaps"`
	// MinKeepAlive is the shortest keep_alive set. Default 5m.
	MinKeepAlive time.Duration `koanf:"min_keep_alive"`
	// MaxKeepAlive is the longest keep_alive set. Default 1h.
	MaxKeepAlive time.Duration `koanf:"max_keep_alive"`
	// MinChange is the least relative change of keep_alive worth applying:
	// 0.25 keeps the current value while the new one is within 25% of it.
	// Default 0.25.
	MinChange float64 `koanf:"min_change"`
	// PriorityKeepAlive is the keep_alive of priority models; negative
	// keeps them loaded for good (as in Ollama). Default -1s.
	PriorityKeepAlive time.Duration `koanf:"priority_keep_alive"`
	// MemoryThreshold is the share of memory in use (0 to 1] above which
	// idle non-priority models are unloaded, least recently used first,
	// until use falls below it. Default 0.85.
	MemoryThreshold float64 `koanf:"memory_threshold"`
	// MinIdle is how long a model must have had no call before it may be
	// unloaded. Default 1m.
	MinIdle time.Duration `koanf:"min_idle"`
}

// DefaultWarmthConfig returns the defaults.
func DefaultWarmthConfig() WarmthConfig {
	return WarmthConfig{
		GapPercentile:     0.95,
		GapFactor:         2,
		MinGaps:           10,
		MinKeepAlive:      5 * time.Minute,
		MaxKeepAlive:      time.Hour,
		MinChange:         0.25,
		PriorityKeepAlive: -time.Second,
		MemoryThreshold:   0.85,
		MinIdle:           time.Minute,
	}
}

// Validate reports a setting that cannot work.
func (c WarmthConfig) Validate() error {
	var errs []error
	if !(c.GapPercentile > 0 && c.GapPercentile <= 1) {
		errs = append(errs, errors.New("policy: warmth: gap_percentile must be above 0 and at most 1"))
	}
	if !(c.GapFactor > 0) {
		errs = append(errs, errors.New("policy: warmth: gap_factor must be positive"))
	}
	if c.MinGaps < 1 {
		errs = append(errs, errors.New("policy: warmth: min_gaps must be at least 1"))
	}
	if c.MinKeepAlive <= 0 || c.MaxKeepAlive < c.MinKeepAlive {
		errs = append(errs, errors.New("policy: warmth: min_keep_alive must be positive and max_keep_alive at least min_keep_alive"))
	}
	if c.MinChange < 0 {
		errs = append(errs, errors.New("policy: warmth: min_change must not be negative"))
	}
	if !(c.MemoryThreshold > 0 && c.MemoryThreshold <= 1) {
		errs = append(errs, errors.New("policy: warmth: memory_threshold must be above 0 and at most 1"))
	}
	if c.MinIdle < 0 {
		errs = append(errs, errors.New("policy: warmth: min_idle must not be negative"))
	}
	return errors.Join(errs...)
}

// InterArrivals returns the gaps between consecutive arrival times, in
// time order; arrivals need not be sorted and are not modified.
func InterArrivals(arrivals []time.Time) []time.Duration {
	if len(arrivals) < 2 {
		return nil
	}
	s := slices.Clone(arrivals)
	slices.SortFunc(s, time.Time.Compare)
	gaps := make([]time.Duration, len(s)-1)
	for i := range gaps {
		gaps[i] = s[i+1].Sub(s[i])
	}
	return gaps
}

// KeepAliveInput is one model's observations.
type KeepAliveInput struct {
	// Current is the model's keep_alive now.
	Current time.Duration
	// Priority models are kept loaded: PriorityKeepAlive.
	Priority bool
	// Gaps are the times between the model's consecutive requests over the
	// optimizer's window (see InterArrivals). The slice is not modified.
	Gaps []time.Duration
}

// KeepAlive decides model's keep_alive: GapPercentile of its inter-arrival
// gaps times GapFactor, within [MinKeepAlive, MaxKeepAlive], so that the
// model stays loaded between its usual requests and leaves memory after a
// longer pause. It keeps Current while there are fewer than MinGaps gaps
// or the new value is within MinChange of it.
func KeepAlive(cfg WarmthConfig, model string, in KeepAliveInput) Decision[time.Duration] {
	p := Percentile(in.Gaps, cfg.GapPercentile)
	choice := clamp(time.Duration(float64(p)*cfg.GapFactor), cfg.MinKeepAlive, cfg.MaxKeepAlive)
	next, reason := in.Current, ""
	switch {
	case in.Priority:
		next = cfg.PriorityKeepAlive
		reason = fmt.Sprintf("priority model: keep_alive %s", next)
	case len(in.Gaps) < cfg.MinGaps:
		reason = fmt.Sprintf("no change: %d gaps between requests, fewer than the %d needed", len(in.Gaps), cfg.MinGaps)
	case in.Current > 0 && math.Abs(float64(choice-in.Current)) < cfg.MinChange*float64(in.Current):
		reason = fmt.Sprintf("no change: %s is within %.0f%% of %s", choice, 100*cfg.MinChange, in.Current)
	default:
		next = choice
		reason = fmt.Sprintf("keep_alive %s: p%s of %d gaps between requests is %s, times %g, within [%s, %s]",
			next, pct(cfg.GapPercentile), len(in.Gaps), p.Round(time.Millisecond), cfg.GapFactor, cfg.MinKeepAlive, cfg.MaxKeepAlive)
	}
	if next == in.Current {
		if !strings.HasPrefix(reason, "no change") {
			reason = "no change: " + reason
		}
	}
	return Decision[time.Duration]{
		Kind:    KindKeepAlive,
		Model:   model,
		Value:   next,
		Changed: next != in.Current,
		Reason:  reason,
		Numbers: map[string]float64{
			"keep_alive_seconds":     in.Current.Seconds(),
			"gaps":                   float64(len(in.Gaps)),
			"gap_pct_seconds":        p.Seconds(),
			"gap_percentile":         cfg.GapPercentile,
			"gap_factor":             cfg.GapFactor,
			"choice_seconds":         choice.Seconds(),
			"min_keep_alive_seconds": cfg.MinKeepAlive.Seconds(),
			"max_keep_alive_seconds": cfg.MaxKeepAlive.Seconds(),
		},
	}
}

// ModelState is one model as the warmth decisions see it.
type ModelState struct {
	// Name is the model as Ollama names it.
	Name string
	// Priority models are preloaded and never unloaded.
	Priority bool
	// Loaded reports whether the model is in memory now.
	Loaded bool
	// SizeBytes is the memory it holds when loaded; 0 when unknown.
	SizeBytes int64
	// LastUsed is when its last call ended; zero when never.
	LastUsed time.Time
	// Running is how many of its calls run now.
	Running int
}

// Preload decides which models to load now: the priority models that are
// not loaded, in the order given.
func Preload(models []ModelState) Decision[[]string] {
	var load []string
	priority := 0
	for _, m := range models {
		if m.Priority {
			priority++
			if !m.Loaded {
				load = append(load, m.Name)
			}
		}
	}
	reason := "no change: every priority model is loaded"
	if len(load) > 0 {
		reason = "preload priority models " + strings.Join(load, ", ")
	}
	return Decision[[]string]{
		Kind:    KindPreload,
		Value:   load,
		Changed: len(load) > 0,
		Reason:  reason,
		Numbers: map[string]float64{"priority_models": float64(priority), "to_load": float64(len(load))},
	}
}

// MemoryInput is the memory of one Ollama host and its models.
type MemoryInput struct {
	// UsedBytes and TotalBytes are the host's memory in use and in all.
	UsedBytes, TotalBytes int64
	// Models are the models of that host.
	Models []ModelState
}

// Unload decides which models to unload at now: when memory use is at or
// above MemoryThreshold, the loaded non-priority models with no running
// call and idle for MinIdle, least recently used first, until the memory
// they hold brings use below the threshold. A model of unknown size is
// unloaded alone, as the last of its evaluation. Priority models are never
// unloaded.
func Unload(cfg WarmthConfig, now time.Time, in MemoryInput) Decision[[]string] {
	numbers := map[string]float64{
		"memory_used_bytes":  float64(in.UsedBytes),
		"memory_total_bytes": float64(in.TotalBytes),
		"memory_threshold":   cfg.MemoryThreshold,
	}
	d := Decision[[]string]{Kind: KindUnload, Numbers: numbers}
	if in.TotalBytes <= 0 {
		d.Reason = "no change: memory size unknown"
		return d
	}
	use := float64(in.UsedBytes) / float64(in.TotalBytes)
	numbers["memory_use"] = use
	if use < cfg.MemoryThreshold {
		d.Reason = fmt.Sprintf("no change: memory use %.0f%% is below %.0f%%", 100*use, 100*cfg.MemoryThreshold)
		return d
	}
	var idle []ModelState
	for _, m := range in.Models {
		if m.Loaded && !m.Priority && m.Running == 0 && now.Sub(m.LastUsed) >= cfg.MinIdle {
			idle = append(idle, m)
		}
	}
	slices.SortStableFunc(idle, func(a, b ModelState) int { return a.LastUsed.Compare(b.LastUsed) })
	used := in.UsedBytes
	var names, why []string
	for _, m := range idle {
		if float64(used) < cfg.MemoryThreshold*float64(in.TotalBytes) {
			break
		}
		names = append(names, m.Name)
		why = append(why, fmt.Sprintf("%s (%s)", m.Name, idleFor(now, m.LastUsed)))
		if m.SizeBytes <= 0 {
			break
		}
		used -= m.SizeBytes
	}
	numbers["idle_models"] = float64(len(idle))
	numbers["memory_use_after"] = float64(used) / float64(in.TotalBytes)
	d.Value, d.Changed = names, len(names) > 0
	if len(names) == 0 {
		d.Reason = fmt.Sprintf("no change: memory use %.0f%% is above %.0f%% but no idle non-priority model is loaded", 100*use, 100*cfg.MemoryThreshold)
	} else {
		d.Reason = fmt.Sprintf("memory use %.0f%% is above %.0f%%: unload %s", 100*use, 100*cfg.MemoryThreshold, strings.Join(why, ", "))
	}
	return d
}

// idleFor describes how long a model has been idle.
func idleFor(now, last time.Time) string {
	if last.IsZero() {
		return "never used"
	}
	return "idle " + now.Sub(last).Round(time.Second).String()
}
