package policy_test

import (
	"fmt"
	"time"

	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
)

// A burst on one model moves a slot to it once the imbalance has lasted
// three evaluations.
func ExampleBudgeter() {
	b := policy.NewBudgeter(policy.DefaultBudgetConfig())
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	slots := map[string]int{"tinyllama": 2, "llama3.2:3b": 2}
	demand := map[string]policy.Demand{
		"tinyllama": {QueueDepth: 12, QueueAge: 3 * time.Second, BusySlots: 2},
	}
	for i := range 3 {
		d := b.Evaluate(now.Add(time.Duration(i)*5*time.Second), policy.BudgetInput{Total: 4, Current: slots, Demand: demand})
		slots = d.Value.Slots
		fmt.Println(d.Changed, d.Reason)
	}
	fmt.Println(slots)
	// Output:
	// false no change: tinyllama wants 3 slots, has 2, for 1 of 3 evaluations
	// false no change: tinyllama wants 3 slots, has 2, for 2 of 3 evaluations
	// true moved 1 slot from llama3.2:3b to tinyllama: tinyllama has 12 queued (oldest 3s) for 3 evaluations, llama3.2:3b runs 0 calls on 2 slots
	// map[llama3.2:3b:1 tinyllama:3]
}

func ExampleContextSizer() {
	s := policy.NewContextSizer(policy.DefaultContextConfig())
	d := s.Evaluate(time.Time{}, "tinyllama", policy.ContextInput{Current: 2048, PromptTokens: []int{2048, 2048, 700}, Truncated: 2})
	fmt.Println(d.Value, d.Reason)
	// Output:
	// 4096 raised from 2048 to 4096: 2 prompts were truncated
}

func ExampleSelectModel() {
	load := map[string]policy.ModelLoad{"deepseek-r1:8b": {BreakerOpen: true}}
	d, err := policy.SelectModel(policy.DefaultAutoConfig(), "planner-2", wire.High, load)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n%s\n", d.Value, d.Reason)
	// Output:
	// {Profile:complex-reasoning Model:llama3.2:3b Priority:normal NumCtx:8192}
	// planner-2 (profile complex-reasoning, matches *planner*): deepseek-r1:8b has its breaker open, so llama3.2:3b at normal priority (ceiling of complex-reasoning)
}

func ExampleUnload() {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	d := policy.Unload(policy.DefaultWarmthConfig(), now, policy.MemoryInput{
		UsedBytes: 15 << 30, TotalBytes: 16 << 30,
		Models: []policy.ModelState{
			{Name: "herd-tiny", Priority: true, Loaded: true, SizeBytes: 1 << 30},
			{Name: "deepseek-r1:8b", Loaded: true, SizeBytes: 5 << 30, LastUsed: now.Add(-20 * time.Minute)},
		},
	})
	fmt.Println(d.Value, d.Reason)
	// Output:
	// [deepseek-r1:8b] memory use 94% is above 85%: unload deepseek-r1:8b (idle 20m0s)
}
