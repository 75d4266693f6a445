package policy

import (
	"testing"
	"time"
)

func TestScaler(t *testing.T) {
	cfg := ScaleConfig{MinInstances: 2, MaxInstances: 4, TargetUtilization: 0.75, UpAfter: 2, DownAfter: 3, DownHold: 5 * time.Minute}
	// load returns demand of busy calls and queued requests; with 2 slots
	// an instance at 75% holds 1.5 of them.
	load := func(busy, queued int) map[string]Demand {
		return map[string]Demand{"a": {BusySlots: busy, QueueDepth: queued}}
	}
	type step struct {
		at          time.Duration
		instances   int
		demand      map[string]Demand
		want        int
		wantChanged bool
	}
	m := time.Minute
	tests := []struct {
		name  string
		steps []step
	}{
		{"idle stays at the minimum", []step{
			{0, 2, nil, 2, false},
			{m, 2, load(0, 0), 2, false},
		}},
		{"first evaluation within bounds", []step{
			{0, 1, nil, 2, true},
		}},
		{"first evaluation above bounds", []step{
			{0, 9, load(4, 0), 4, true},
		}},
		{"burst raises after up_after, capped at max", []step{
			{0, 2, load(3, 0), 2, false},
			{m, 2, load(4, 20), 2, false},
			{2 * m, 2, load(4, 20), 4, true},
			{3 * m, 4, load(4, 20), 4, false},
		}},
		{"raises to the least figure of the streak", []step{
			{0, 2, load(4, 0), 2, false}, // 4/1.5 -> 3
			{m, 2, load(4, 4), 3, true},  // 8/1.5 -> 4, but 3 was enough before
		}},
		{"falls after down_after and down_hold", []step{
			{0, 2, load(4, 20), 2, false},
			{m, 2, load(4, 20), 4, true},
			{2 * m, 4, load(0, 0), 4, false},
			{3 * m, 4, load(0, 0), 4, false},
			{4 * m, 4, load(0, 0), 4, false}, // streak done, hold not
			{5 * m, 4, load(4, 0), 4, false}, // 4 busy want 3: still fewer
			{6 * m, 4, load(0, 0), 3, true},  // the most the streak wanted
		}},
		{"alternating demand does not flap", []step{
			{0, 2, load(4, 0), 2, false},
			{m, 2, load(1, 0), 2, false},
			{2 * m, 2, load(4, 0), 2, false},
			{3 * m, 2, load(1, 0), 2, false},
			{4 * m, 2, load(4, 0), 2, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScaler(cfg)
			for i, st := range tt.steps {
				d := s.Evaluate(t0.Add(st.at), ScaleInput{Instances: st.instances, SlotsPerInstance: 2, Demand: st.demand})
				if d.Value != st.want || d.Changed != st.wantChanged {
					t.Fatalf("step %d: %d changed %v, want %d changed %v (reason %q)", i, d.Value, d.Changed, st.want, st.wantChanged, d.Reason)
				}
				if d.Kind != KindInstances || d.Reason == "" || d.Numbers["desired"] == 0 {
					t.Fatalf("step %d: decision %+v lacks its kind, reason or numbers", i, d)
				}
			}
		})
	}
}
