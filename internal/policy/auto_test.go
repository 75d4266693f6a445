package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

func TestSelectModel(t *testing.T) {
	cfg := DefaultAutoConfig() // queue 32, age 10s, p95 60s
	tests := []struct {
		name      string
		agent     string
		requested wire.Priority
		load      map[string]ModelLoad
		want      Selection
		reason    string
	}{
		{
			name: "high-throughput default model", agent: "batch-indexer", requested: wire.High,
			want:   Selection{Profile: "high-throughput", Model: "tinyllama", Priority: wire.High, NumCtx: 2048},
			reason: "default model tinyllama",
		},
		{
			name: "reasoning capped at normal", agent: "code-reasoner-7", requested: wire.High,
			want:   Selection{Profile: "complex-reasoning", Model: "deepseek-r1:8b", Priority: wire.Normal, NumCtx: 8192},
			reason: "ceiling",
		},
		{
			name: "below the ceiling kept", agent: "planner", requested: wire.Low,
			want:   Selection{Profile: "complex-reasoning", Model: "deepseek-r1:8b", Priority: wire.Low, NumCtx: 8192},
			reason: "matches *planner*",
		},
		{
			name: "unmatched agent: default profile", agent: "formatter", requested: wire.Normal,
			want:   Selection{Profile: "utility", Model: "llama3.2:3b", Priority: wire.Low, NumCtx: 4096},
			reason: "the default profile",
		},
		{
			name: "invalid priority counts as normal", agent: "planner", requested: "urgent",
			want: Selection{Profile: "complex-reasoning", Model: "deepseek-r1:8b", Priority: wire.Normal, NumCtx: 8192},
		},
		{
			name: "breaker open: next model", agent: "planner", requested: wire.Normal,
			load:   map[string]ModelLoad{"deepseek-r1:8b": {BreakerOpen: true}},
			want:   Selection{Profile: "complex-reasoning", Model: "llama3.2:3b", Priority: wire.Normal, NumCtx: 8192},
			reason: "deepseek-r1:8b has its breaker open, so llama3.2:3b",
		},
		{
			name: "queue too deep: next model", agent: "planner", requested: wire.Normal,
			load:   map[string]ModelLoad{"deepseek-r1:8b": {QueueDepth: 40}},
			want:   Selection{Profile: "complex-reasoning", Model: "llama3.2:3b", Priority: wire.Normal, NumCtx: 8192},
			reason: "40 queued",
		},
		{
			name: "latency too high and unavailable: third model", agent: "planner", requested: wire.Normal,
			load:   map[string]ModelLoad{"deepseek-r1:8b": {LatencyP95: 2 * time.Minute}, "llama3.2:3b": {Unavailable: true}},
			want:   Selection{Profile: "complex-reasoning", Model: "tinyllama", Priority: wire.Normal, NumCtx: 8192},
			reason: "served by no worker",
		},
		{
			name: "all busy: least loaded", agent: "planner", requested: wire.Normal,
			load: map[string]ModelLoad{
				"deepseek-r1:8b": {QueueAge: 30 * time.Second},
				"llama3.2:3b":    {QueueAge: 12 * time.Second, QueueDepth: 40},
				"tinyllama":      {BreakerOpen: true},
			},
			want:   Selection{Profile: "complex-reasoning", Model: "llama3.2:3b", Priority: wire.Normal, NumCtx: 8192},
			reason: "least loaded llama3.2:3b",
		},
		{
			name: "all down: the default fails fast", agent: "batch-1", requested: wire.Normal,
			load:   map[string]ModelLoad{"tinyllama": {BreakerOpen: true}, "herd-tiny": {BreakerOpen: true}},
			want:   Selection{Profile: "high-throughput", Model: "tinyllama", Priority: wire.Normal, NumCtx: 2048},
			reason: "fails fast",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := SelectModel(cfg, tt.agent, tt.requested, tt.load)
			if err != nil {
				t.Fatal(err)
			}
			if d.Value != tt.want || d.Model != tt.want.Model || d.Kind != KindAutoModel || !d.Changed {
				t.Errorf("SelectModel = %+v, want %+v", d, tt.want)
			}
			if !strings.Contains(d.Reason, tt.reason) || d.Numbers["breaker_open/"+tt.want.Model] != b2f(tt.load[tt.want.Model].BreakerOpen) {
				t.Errorf("reason %q numbers %v: want reason with %q and the chosen model's numbers", d.Reason, d.Numbers, tt.reason)
			}
		})
	}
}

func TestSelectModelNoProfile(t *testing.T) {
	cfg := DefaultAutoConfig()
	cfg.DefaultProfile = ""
	if _, err := SelectModel(cfg, "formatter", wire.Normal, nil); !errors.Is(err, ErrNoProfile) {
		t.Fatalf("err = %v, want ErrNoProfile", err)
	}
}
