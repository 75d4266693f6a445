package policy

import (
	"strings"
	"testing"
	"time"
)

// bursts returns n bursts of 3 requests, every period from t0.
func bursts(n int, period time.Duration) []time.Time {
	var a []time.Time
	for i := range n {
		s := t0.Add(time.Duration(i) * period)
		a = append(a, s, s.Add(time.Second), s.Add(2*time.Second))
	}
	return a
}

func TestPreloadByRhythm(t *testing.T) {
	cfg := RhythmConfig{IdleGap: 30 * time.Second, MinBursts: 3, Tolerance: 0.2, Lead: 10 * time.Second}
	min5 := 5 * time.Minute
	last := t0.Add(3 * min5) // the fourth burst started here
	irregular := append(bursts(3, min5), t0.Add(3*min5+2*time.Minute))
	tests := []struct {
		name    string
		now     time.Time
		in      RhythmInput
		changed bool
		reason  string
	}{
		{"every 5 minutes, 5s before the next", last.Add(min5 - 5*time.Second), RhythmInput{Arrivals: bursts(4, min5), MemoryFits: true}, true, "preload m: 4 bursts every 5m0s"},
		{"too early", last.Add(2 * time.Minute), RhythmInput{Arrivals: bursts(4, min5), MemoryFits: true}, false, "next burst due in 3m0s"},
		{"already due", last.Add(min5 + time.Second), RhythmInput{Arrivals: bursts(4, min5), MemoryFits: true}, false, "next burst due in -1s"},
		{"loaded", last.Add(min5 - 5*time.Second), RhythmInput{Arrivals: bursts(4, min5), Loaded: true, MemoryFits: true}, false, "no change: loaded"},
		{"no memory", last.Add(min5 - 5*time.Second), RhythmInput{Arrivals: bursts(4, min5)}, false, "memory does not allow"},
		{"two bursts are not a rhythm", t0.Add(2*min5 - 5*time.Second), RhythmInput{Arrivals: bursts(2, min5), MemoryFits: true}, false, "2 bursts, fewer than the 3 needed"},
		{"irregular", last.Add(min5 - 5*time.Second), RhythmInput{Arrivals: irregular, MemoryFits: true}, false, "not steady"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := PreloadByRhythm(cfg, "m", tt.now, tt.in)
			if d.Changed != tt.changed || !strings.Contains(d.Reason, tt.reason) || d.Kind != KindPreload {
				t.Errorf("changed %v reason %q, want %v containing %q", d.Changed, d.Reason, tt.changed, tt.reason)
			}
			if d.Changed && (d.Numbers["period_seconds"] != 300 || d.Numbers["bursts"] != 4 || !d.Value.Equal(last.Add(min5))) {
				t.Errorf("numbers %v value %v", d.Numbers, d.Value)
			}
		})
	}
}
