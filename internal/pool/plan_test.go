package pool

import (
	"reflect"
	"testing"
)

func TestPlan(t *testing.T) {
	two, four := []int{0, 1}, []int{0, 1, 2, 3}
	for _, tc := range []struct {
		name        string
		in          Input
		count       int
		slots       []Slot
		start, stop []int // slot indexes
	}{
		{name: "auto starts at min before any decision",
			in: Input{Auto: true, Cores: two, CoresPerInstance: 1, Min: 1}, count: 1,
			slots: []Slot{{0, []int{0}}}, start: []int{0}},
		{name: "auto keeps what runs before any decision",
			in: Input{Auto: true, Cores: two, CoresPerInstance: 1, Min: 1, Running: []int{0, 1}}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}},
		{name: "auto grows to the decision on the next cores",
			in: Input{Auto: true, Want: 2, Cores: two, CoresPerInstance: 1, Min: 1, Running: []int{0}}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}, start: []int{1}},
		{name: "auto decision above the cores is cut to them",
			in: Input{Auto: true, Want: 4, Cores: two, CoresPerInstance: 1, Min: 1, Running: []int{0}}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}, start: []int{1}},
		{name: "auto decision above max",
			in: Input{Auto: true, Want: 4, Cores: four, CoresPerInstance: 1, Min: 1, Max: 3}, count: 3,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}, {2, []int{2}}}, start: []int{0, 1, 2}},
		{name: "auto decision below min",
			in: Input{Auto: true, Want: 1, Cores: four, CoresPerInstance: 1, Min: 2, Running: []int{0, 1, 2}}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}, stop: []int{2}},
		{name: "auto shrinks the highest slots first",
			in: Input{Auto: true, Want: 1, Cores: four, CoresPerInstance: 1, Min: 1, Running: []int{0, 1, 2}}, count: 1,
			slots: []Slot{{0, []int{0}}}, stop: []int{2, 1}},
		{name: "an instance keeps its slot; a free lower slot is filled",
			in: Input{Auto: true, Want: 2, Cores: four, CoresPerInstance: 1, Min: 1, Running: []int{2}}, count: 2,
			slots: []Slot{{0, []int{0}}, {2, []int{2}}}, start: []int{0}},
		{name: "two cores per instance",
			in: Input{Auto: true, Want: 2, Cores: []int{4, 5, 6, 7, 8}, CoresPerInstance: 2, Min: 1}, count: 2,
			slots: []Slot{{0, []int{4, 5}}, {1, []int{6, 7}}}, start: []int{0, 1}},
		{name: "min above the cores is cut to them",
			in: Input{Auto: true, Cores: two, CoresPerInstance: 1, Min: 3}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}, start: []int{0, 1}},
		{name: "fixed ignores the bounds, not the cores",
			in: Input{Want: 3, Cores: two, CoresPerInstance: 1, Min: 1, Max: 1, Running: []int{0}}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}, start: []int{1}},
		{name: "an instance beyond fewer cores is stopped",
			in: Input{Auto: true, Want: 2, Cores: two, CoresPerInstance: 1, Min: 1, Running: []int{0, 3}}, count: 2,
			slots: []Slot{{0, []int{0}}, {1, []int{1}}}, start: []int{1}, stop: []int{3}},
		{name: "cores that hold none stop everything",
			in: Input{Auto: true, Want: 1, Cores: []int{0}, CoresPerInstance: 2, Min: 1, Running: []int{0}}, count: 0,
			stop: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(tc.in)
			if got.Count != tc.count || !reflect.DeepEqual(got.Slots, tc.slots) {
				t.Errorf("Plan = %d %v, want %d %v (%s)", got.Count, got.Slots, tc.count, tc.slots, got.Reason)
			}
			if idx := indexes(got.Start); !reflect.DeepEqual(idx, tc.start) {
				t.Errorf("start %v, want %v (%s)", idx, tc.start, got.Reason)
			}
			if idx := indexes(got.Stop); !reflect.DeepEqual(idx, tc.stop) {
				t.Errorf("stop %v, want %v (%s)", idx, tc.stop, got.Reason)
			}
			if got.Reason == "" {
				t.Error("no reason")
			}
		})
	}
}

func indexes(ss []Slot) []int {
	var out []int
	for _, s := range ss {
		out = append(out, s.Index)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"auto", func(c *Config) { c.Instances = "auto" }, true},
		{"AUTO", func(c *Config) { c.Instances = "AUTO" }, true},
		{"three", func(c *Config) { c.Instances = "3" }, true},
		{"zero", func(c *Config) { c.Instances = "0" }, false},
		{"word", func(c *Config) { c.Instances = "many" }, false},
		{"no cores per instance", func(c *Config) { c.CoresPerInstance = 0 }, false},
		{"max below min", func(c *Config) { c.MinInstances, c.MaxInstances = 2, 1 }, false},
		{"cpu twice", func(c *Config) { c.CPUs = []int{1, 1} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.cfg(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
	if DefaultConfig().Enabled() {
		t.Error("the default runs a pool")
	}
}
