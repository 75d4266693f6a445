package policy

import (
	"fmt"
	"slices"
	"time"
)

// RhythmConfig is the preload-by-arrival-pattern policy: a model whose
// requests come in bursts at a steady period (a periodic job every N
// minutes after idle) is loaded shortly before the next burst is due.
type RhythmConfig struct {
	// IdleGap is the least gap between two requests that starts a new
	// burst. Default 30s.
	IdleGap time.Duration `koanf:"idle_gap"`
	// MinBursts is how many bursts must have been seen (MinBursts-1
	// periods) before a rhythm is trusted. Default 3.
	MinBursts int `koanf:"min_bursts"`
	// Tolerance is how far (share of the period) a period may stray from
	// the median for the rhythm to count as steady. Default 0.2.
	Tolerance float64 `koanf:"tolerance"`
	// Lead is how long before the next expected burst the model is
	// loaded. Default 10s.
	Lead time.Duration `koanf:"lead"`
}

// DefaultRhythmConfig returns the defaults.
func DefaultRhythmConfig() RhythmConfig {
	return RhythmConfig{IdleGap: 30 * time.Second, MinBursts: 3, Tolerance: 0.2, Lead: 10 * time.Second}
}

// RhythmInput is one model's arrivals and state.
type RhythmInput struct {
	// Arrivals are its request arrival times; they need not be sorted and
	// are not modified.
	Arrivals []time.Time
	// Loaded reports whether it is in memory now.
	Loaded bool
	// MemoryFits reports whether loading it keeps the host's memory below
	// the unload threshold.
	MemoryFits bool
}

// PreloadByRhythm decides at now whether to load model ahead of its next
// expected burst: when its bursts (arrivals separated by IdleGap) have
// come at a steady period (each within Tolerance of the median) at least
// MinBursts times, the next is due at the last burst's start plus the
// period, and now is within Lead of it (and not past it), the model is
// not loaded and memory allows. The decision's value is the expected
// arrival time.
func PreloadByRhythm(cfg RhythmConfig, model string, now time.Time, in RhythmInput) Decision[time.Time] {
	d := Decision[time.Time]{Kind: KindPreload, Model: model, Numbers: map[string]float64{"lead_seconds": cfg.Lead.Seconds()}}
	a := slices.Clone(in.Arrivals)
	slices.SortFunc(a, time.Time.Compare)
	var starts []time.Time
	for i, t := range a {
		if i == 0 || t.Sub(a[i-1]) >= cfg.IdleGap {
			starts = append(starts, t)
		}
	}
	d.Numbers["bursts"] = float64(len(starts))
	if len(starts) < max(cfg.MinBursts, 2) {
		d.Reason = fmt.Sprintf("no change: %d bursts, fewer than the %d needed", len(starts), cfg.MinBursts)
		return d
	}
	periods := InterArrivals(starts)
	period := Percentile(periods, 0.5)
	d.Numbers["period_seconds"] = period.Seconds()
	for _, p := range periods {
		if dev := float64(p-period) / float64(period); dev > cfg.Tolerance || dev < -cfg.Tolerance {
			d.Reason = fmt.Sprintf("no change: periods between bursts are not steady (%s against a median of %s)", p.Round(time.Second), period.Round(time.Second))
			return d
		}
	}
	next := starts[len(starts)-1].Add(period)
	d.Value = next
	d.Numbers["due_in_seconds"] = next.Sub(now).Seconds()
	switch {
	case in.Loaded:
		d.Reason = fmt.Sprintf("no change: loaded; next burst due in %s (every %s)", next.Sub(now).Round(time.Second), period.Round(time.Second))
	case now.Before(next.Add(-cfg.Lead)) || !now.Before(next):
		d.Reason = fmt.Sprintf("no change: next burst due in %s (every %s), lead %s", next.Sub(now).Round(time.Second), period.Round(time.Second), cfg.Lead)
	case !in.MemoryFits:
		d.Reason = fmt.Sprintf("no change: next burst due in %s but memory does not allow loading it", next.Sub(now).Round(time.Second))
	default:
		d.Changed = true
		d.Reason = fmt.Sprintf("preload %s: %d bursts every %s (within %.0f%%), the next due in %s", model, len(starts), period.Round(time.Second),
			100*cfg.Tolerance, next.Sub(now).Round(time.Second))
	}
	return d
}
