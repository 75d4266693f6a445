package policy

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		key    string
	}{
		{"budget persist", func(c *Config) { c.Budget.Persist = 0 }, "persist"},
		{"budget bounds", func(c *Config) { c.Budget.MinSlots, c.Budget.MaxSlots = 3, 2 }, "min_slots"},
		{"budget model twice", func(c *Config) { c.Budget.Models = []ModelSlots{{Name: "a"}, {Name: "a"}} }, "listed twice"},
		{"budget model bounds", func(c *Config) { c.Budget.Models = []ModelSlots{{Name: "a", MinSlots: 4, MaxSlots: 1}} }, "models[0]"},
		{"scale instances", func(c *Config) { c.Scale.MaxInstances = 1 }, "max_instances"},
		{"scale utilization", func(c *Config) { c.Scale.TargetUtilization = 1.5 }, "target_utilization"},
		{"scale down_hold", func(c *Config) { c.Scale.DownHold = -time.Second }, "down_hold"},
		{"context percentile", func(c *Config) { c.Context.Percentile = 0 }, "percentile"},
		{"context bounds", func(c *Config) { c.Context.MinNumCtx = 100 }, "min_num_ctx"},
		{"context lower_ratio", func(c *Config) { c.Context.LowerRatio = 1 }, "lower_ratio"},
		{"context model", func(c *Config) { c.Context.Models = []ModelContext{{Name: "a"}} }, "models[0]"},
		{"warmth keep_alive", func(c *Config) { c.Warmth.MaxKeepAlive = time.Minute }, "max_keep_alive"},
		{"warmth memory", func(c *Config) { c.Warmth.MemoryThreshold = 0 }, "memory_threshold"},
		{"auto default profile", func(c *Config) { c.Auto.DefaultProfile = "nobody" }, "default_profile"},
		{"auto ceiling", func(c *Config) { c.Auto.Profiles[0].PriorityCeiling = "urgent" }, "priority_ceiling"},
		{"auto pattern", func(c *Config) { c.Auto.Profiles[0].Agents = []string{"[a-"} }, "agents pattern"},
		{"auto models", func(c *Config) { c.Auto.Profiles[1].Models = nil }, "models of"},
		{"auto num_ctx", func(c *Config) { c.Auto.Profiles[2].NumCtx = 10 }, "num_ctx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.key)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		values []int
		q      float64
		want   int
	}{
		{"empty", nil, 0.99, 0},
		{"one", []int{7}, 0.5, 7},
		{"median of unsorted", []int{5, 1, 4, 2, 3}, 0.5, 3},
		{"p99 of 100", prompts(100, 1, 100), 0.99, 99},
		{"p100 is the max", []int{3, 9, 1}, 1, 9},
		{"tiny q is the min", []int{3, 9, 1}, 0.0001, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]int(nil), tt.values...)
			if got := Percentile(tt.values, tt.q); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %d, want %d", tt.values, tt.q, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.values[i] {
					t.Fatalf("Percentile modified its input")
				}
			}
		})
	}
}
