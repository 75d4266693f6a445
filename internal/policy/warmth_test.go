package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// gaps returns n gaps of d.
func gaps(n int, d time.Duration) []time.Duration {
	return slices.Repeat([]time.Duration{d}, n)
}

func TestInterArrivals(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name string
		in   []time.Time
		want []time.Duration
	}{
		{"none", nil, nil},
		{"one", []time.Time{at(0)}, nil},
		{"unsorted", []time.Time{at(10), at(0), at(3)}, []time.Duration{3 * time.Second, 7 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InterArrivals(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("InterArrivals = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	cfg := DefaultWarmthConfig() // p95 x 2 within [5m, 1h], 10 gaps, 25%
	m := time.Minute
	tests := []struct {
		name    string
		in      KeepAliveInput
		want    time.Duration
		changed bool
	}{
		{"frequent requests: the minimum", KeepAliveInput{Current: 30 * m, Gaps: gaps(50, 10*time.Second)}, 5 * m, true},
		{"p95 of gaps times the factor", KeepAliveInput{Current: 10 * m, Gaps: append(gaps(90, m), gaps(10, 12*m)...)}, 24 * m, true},
		{"rare requests: the maximum", KeepAliveInput{Current: 30 * m, Gaps: gaps(20, 2*time.Hour)}, time.Hour, true},
		{"too few gaps: unchanged", KeepAliveInput{Current: 30 * m, Gaps: gaps(9, 2*time.Hour)}, 30 * m, false},
		{"within min_change: unchanged", KeepAliveInput{Current: 20 * m, Gaps: gaps(20, 11*m)}, 20 * m, false},
		{"beyond min_change: changed", KeepAliveInput{Current: 20 * m, Gaps: gaps(20, 13*m)}, 26 * m, true},
		{"no current value", KeepAliveInput{Gaps: gaps(20, 10*m)}, 20 * m, true},
		{"priority model stays loaded", KeepAliveInput{Current: 30 * m, Priority: true, Gaps: gaps(20, 10*time.Second)}, -time.Second, true},
		{"priority model already set", KeepAliveInput{Current: -time.Second, Priority: true}, -time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := KeepAlive(cfg, "m", tt.in)
			if d.Value != tt.want || d.Changed != tt.changed {
				t.Errorf("keep_alive %v changed %v, want %v changed %v (reason %q)", d.Value, d.Changed, tt.want, tt.changed, d.Reason)
			}
			if d.Kind != KindKeepAlive || d.Model != "m" || d.Reason == "" || d.Numbers["gaps"] != float64(len(tt.in.Gaps)) {
				t.Errorf("decision %+v lacks its kind, model, reason or numbers", d)
			}
			if !d.Changed && !strings.HasPrefix(d.Reason, "no change") {
				t.Errorf("reason %q of an unchanged value", d.Reason)
			}
		})
	}
}

func TestPreload(t *testing.T) {
	tests := []struct {
		name   string
		models []ModelState
		want   []string
	}{
		{"none", nil, nil},
		{"priority models not loaded, in order", []ModelState{
			{Name: "b", Priority: true}, {Name: "x"}, {Name: "a", Priority: true}, {Name: "c", Priority: true, Loaded: true},
		}, []string{"b", "a"}},
		{"all loaded", []ModelState{{Name: "a", Priority: true, Loaded: true}, {Name: "x"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Preload(tt.models)
			if !slices.Equal(d.Value, tt.want) || d.Changed != (len(tt.want) > 0) || d.Kind != KindPreload {
				t.Errorf("Preload = %+v, want %v", d, tt.want)
			}
		})
	}
}

func TestUnload(t *testing.T) {
	cfg := DefaultWarmthConfig() // 85%, idle 1m
	const gib = 1 << 30
	ago := func(d time.Duration) time.Time { return t0.Add(-d) }
	m := time.Minute
	models := []ModelState{
		{Name: "prio", Priority: true, Loaded: true, SizeBytes: 8 * gib, LastUsed: ago(time.Hour)},
		{Name: "old", Loaded: true, SizeBytes: 2 * gib, LastUsed: ago(30 * m)},
		{Name: "older", Loaded: true, SizeBytes: 2 * gib, LastUsed: ago(50 * m)},
		{Name: "recent", Loaded: true, SizeBytes: 4 * gib, LastUsed: ago(30 * time.Second)},
		{Name: "running", Loaded: true, SizeBytes: 4 * gib, LastUsed: ago(20 * m), Running: 1},
		{Name: "gone", SizeBytes: 4 * gib, LastUsed: ago(2 * time.Hour)},
	}
	tests := []struct {
		name   string
		in     MemoryInput
		want   []string
		reason string
	}{
		{"below the threshold", MemoryInput{UsedBytes: 13 * gib, TotalBytes: 16 * gib, Models: models}, nil, "below"},
		{"least recently used first, enough to fit", MemoryInput{UsedBytes: 14 * gib, TotalBytes: 16 * gib, Models: models}, []string{"older"}, "unload older"},
		{"more when one is not enough", MemoryInput{UsedBytes: 16 * gib, TotalBytes: 16 * gib, Models: models}, []string{"older", "old"}, "unload older"},
		{"never priority, running or recent", MemoryInput{UsedBytes: 16 * gib, TotalBytes: 16 * gib, Models: models[:1]}, nil, "no idle"},
		{"unknown size: one at a time", MemoryInput{UsedBytes: 15 * gib, TotalBytes: 16 * gib, Models: []ModelState{
			{Name: "a", Loaded: true, LastUsed: ago(10 * m)}, {Name: "b", Loaded: true, LastUsed: ago(20 * m)},
		}}, []string{"b"}, "unload b"},
		{"never used counts as oldest", MemoryInput{UsedBytes: 15 * gib, TotalBytes: 16 * gib, Models: []ModelState{
			{Name: "a", Loaded: true, SizeBytes: 2 * gib, LastUsed: ago(10 * m)}, {Name: "b", Loaded: true, SizeBytes: 2 * gib},
		}}, []string{"b"}, "never used"},
		{"memory unknown", MemoryInput{Models: models}, nil, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Unload(cfg, t0, tt.in)
			if !slices.Equal(d.Value, tt.want) || d.Changed != (len(tt.want) > 0) {
				t.Errorf("Unload = %v changed %v, want %v (reason %q)", d.Value, d.Changed, tt.want, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reason) || d.Kind != KindUnload || d.Numbers["memory_threshold"] != 0.85 {
				t.Errorf("decision %+v: want reason with %q and the threshold", d, tt.reason)
			}
		})
	}
}
