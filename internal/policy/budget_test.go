package policy

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// idle and burst are demands of one model.
var (
	idle  = Demand{}
	burst = Demand{QueueDepth: 10, QueueAge: 2 * time.Second, BusySlots: 2, Throughput: 1.5}
)

// budgetStep is one evaluation of a Budgeter sequence.
type budgetStep struct {
	at          time.Duration
	total       int
	demand      map[string]Demand
	want        map[string]int
	wantChanged bool
}

// runBudget evaluates steps in order, each starting from the previous
// allocation, and checks the allocation after each.
func runBudget(t *testing.T, cfg BudgetConfig, start map[string]int, steps []budgetStep) {
	t.Helper()
	b := NewBudgeter(cfg)
	cur := start
	for i, s := range steps {
		d := b.Evaluate(t0.Add(s.at), BudgetInput{Total: s.total, Current: cur, Demand: s.demand})
		if !maps.Equal(d.Value.Slots, s.want) || d.Changed != s.wantChanged {
			t.Fatalf("step %d at %v: slots %v changed %v, want %v changed %v (reason %q)",
				i, s.at, d.Value.Slots, d.Changed, s.want, s.wantChanged, d.Reason)
		}
		if d.Kind != KindBudget || d.Reason == "" || d.Numbers["total"] != float64(s.total) {
			t.Fatalf("step %d: decision %+v lacks its kind, reason or numbers", i, d)
		}
		if d.Changed && len(d.Value.Moves) > 0 && !strings.HasPrefix(d.Reason, "moved") {
			t.Fatalf("step %d: reason %q does not say what moved", i, d.Reason)
		}
		cur = d.Value.Slots
	}
}

func TestBudgetBurstMovesAndReturns(t *testing.T) {
	cfg := BudgetConfig{Persist: 3, Hold: 30 * time.Second, MaxMoves: 1, MinQueueAge: 500 * time.Millisecond, MinSlots: 1}
	sec := time.Second
	aBurst := map[string]Demand{"a": burst, "b": idle}
	calm := map[string]Demand{"a": idle, "b": idle}
	even := map[string]int{"a": 2, "b": 2}
	toA := map[string]int{"a": 3, "b": 1}
	runBudget(t, cfg, even, []budgetStep{
		{0, 4, calm, even, false},
		{5 * sec, 4, aBurst, even, false},
		{10 * sec, 4, aBurst, even, false},
		{15 * sec, 4, aBurst, toA, true},  // third evaluation in a row: move
		{20 * sec, 4, aBurst, toA, false}, // b keeps its minimum
		{25 * sec, 4, calm, toA, false},
		{30 * sec, 4, calm, toA, false},
		{35 * sec, 4, calm, toA, false}, // persisted, but a gained at 15s: hold
		{40 * sec, 4, calm, toA, false},
		{45 * sec, 4, calm, even, true}, // hold over: back to even shares
		{50 * sec, 4, calm, even, false},
	})
}

func TestBudgetDoesNotFlap(t *testing.T) {
	cfg := BudgetConfig{Persist: 3, Hold: 30 * time.Second, MaxMoves: 1, MinQueueAge: 500 * time.Millisecond, MinSlots: 1}
	sec := time.Second
	even := map[string]int{"a": 2, "b": 2}
	aSmall := map[string]Demand{"a": {QueueDepth: 1, QueueAge: time.Second, BusySlots: 2}, "b": {BusySlots: 1}}
	bSmall := map[string]Demand{"a": {BusySlots: 1}, "b": {QueueDepth: 1, QueueAge: time.Second, BusySlots: 2}}
	young := map[string]Demand{"a": {QueueDepth: 5, QueueAge: 100 * time.Millisecond, BusySlots: 2}, "b": idle}

	t.Run("alternating small imbalances", func(t *testing.T) {
		var steps []budgetStep
		for i := range 20 {
			d := aSmall
			if i%2 == 1 {
				d = bSmall
			}
			steps = append(steps, budgetStep{time.Duration(i) * 5 * sec, 4, d, even, false})
		}
		runBudget(t, cfg, even, steps)
	})
	t.Run("imbalance shorter than persist", func(t *testing.T) {
		runBudget(t, cfg, even, []budgetStep{
			{0, 4, aSmall, even, false},
			{5 * sec, 4, aSmall, even, false},
			{10 * sec, 4, map[string]Demand{"a": {BusySlots: 2}, "b": {BusySlots: 2}}, even, false},
			{15 * sec, 4, aSmall, even, false},
			{20 * sec, 4, aSmall, even, false},
		})
	})
	t.Run("young queues are not demand", func(t *testing.T) {
		runBudget(t, cfg, even, []budgetStep{
			{0, 4, young, even, false},
			{5 * sec, 4, young, even, false},
			{10 * sec, 4, young, even, false},
			{15 * sec, 4, young, even, false},
		})
	})
	t.Run("no move back within hold", func(t *testing.T) {
		bBurst := map[string]Demand{"a": idle, "b": burst}
		aBurst := map[string]Demand{"a": burst, "b": idle}
		toA := map[string]int{"a": 3, "b": 1}
		runBudget(t, cfg, even, []budgetStep{
			{0, 4, aBurst, even, false},
			{1 * sec, 4, aBurst, even, false},
			{2 * sec, 4, aBurst, toA, true},
			{3 * sec, 4, bBurst, toA, false},
			{4 * sec, 4, bBurst, toA, false},
			{5 * sec, 4, bBurst, toA, false}, // persisted, but held
			{31 * sec, 4, bBurst, toA, false},
			{32 * sec, 4, bBurst, even, true}, // hold over: one slot back
			{33 * sec, 4, bBurst, map[string]int{"a": 1, "b": 3}, true},
		})
	})
}

func TestBudgetBounds(t *testing.T) {
	base := BudgetConfig{Persist: 1, MaxMoves: 4, MinSlots: 1}
	withModels := func(ms ...ModelSlots) BudgetConfig { c := base; c.Models = ms; return c }
	tests := []struct {
		name    string
		cfg     BudgetConfig
		in      BudgetInput
		want    map[string]int
		changed bool
	}{
		{
			name: "max caps the busy model",
			cfg:  withModels(ModelSlots{Name: "a", MinSlots: 1, MaxSlots: 3}),
			in:   BudgetInput{Total: 6, Current: map[string]int{"a": 3, "b": 3}, Demand: map[string]Demand{"a": {QueueDepth: 50, QueueAge: time.Second, BusySlots: 3}}},
			want: map[string]int{"a": 3, "b": 3},
		},
		{
			name:    "min keeps an idle model",
			cfg:     withModels(ModelSlots{Name: "b", MinSlots: 2}),
			in:      BudgetInput{Total: 6, Current: map[string]int{"a": 3, "b": 3}, Demand: map[string]Demand{"a": {QueueDepth: 50, QueueAge: time.Second, BusySlots: 3}}},
			want:    map[string]int{"a": 4, "b": 2},
			changed: true,
		},
		{
			name:    "demand shared max-min fair",
			cfg:     base,
			in:      BudgetInput{Total: 8, Current: map[string]int{"a": 4, "b": 2, "c": 2}, Demand: map[string]Demand{"a": {BusySlots: 1}, "b": {QueueDepth: 9, QueueAge: time.Second, BusySlots: 2}, "c": {QueueDepth: 9, QueueAge: time.Second, BusySlots: 2}}},
			want:    map[string]int{"a": 1, "b": 4, "c": 3},
			changed: true,
		},
		{
			name:    "total grows: fitted at once",
			cfg:     base,
			in:      BudgetInput{Total: 6, Current: map[string]int{"a": 2, "b": 2}, Demand: map[string]Demand{"a": burst}},
			want:    map[string]int{"a": 5, "b": 1},
			changed: true,
		},
		{
			name:    "total shrinks: fitted at once",
			cfg:     base,
			in:      BudgetInput{Total: 2, Current: map[string]int{"a": 2, "b": 2}},
			want:    map[string]int{"a": 1, "b": 1},
			changed: true,
		},
		{
			name:    "minimums above the total: the busiest first",
			cfg:     base,
			in:      BudgetInput{Total: 2, Current: map[string]int{"a": 1, "b": 1, "c": 1}, Demand: map[string]Demand{"b": {BusySlots: 1}, "c": {BusySlots: 1}}},
			want:    map[string]int{"a": 0, "b": 1, "c": 1},
			changed: true,
		},
		{
			name:    "new model gets its minimum",
			cfg:     BudgetConfig{Persist: 3, MaxMoves: 1, MinSlots: 1},
			in:      BudgetInput{Total: 4, Current: map[string]int{"a": 4}, Demand: map[string]Demand{"b": idle}},
			want:    map[string]int{"a": 3, "b": 1},
			changed: true,
		},
		{
			name: "maximums below the total leave slots unallocated",
			cfg:  BudgetConfig{Persist: 1, MaxMoves: 1, MinSlots: 1, MaxSlots: 2},
			in:   BudgetInput{Total: 8, Current: map[string]int{"a": 2, "b": 2}},
			want: map[string]int{"a": 2, "b": 2},
		},
		{
			name:    "max_moves limits one evaluation",
			cfg:     BudgetConfig{Persist: 1, MaxMoves: 1, MinSlots: 1},
			in:      BudgetInput{Total: 8, Current: map[string]int{"a": 4, "b": 4}, Demand: map[string]Demand{"a": {QueueDepth: 9, QueueAge: time.Second, BusySlots: 4}}},
			want:    map[string]int{"a": 5, "b": 3},
			changed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBudgeter(tt.cfg)
			d := b.Evaluate(t0, tt.in)
			if !maps.Equal(d.Value.Slots, tt.want) || d.Changed != tt.changed {
				t.Errorf("slots %v changed %v, want %v changed %v (reason %q)", d.Value.Slots, d.Changed, tt.want, tt.changed, d.Reason)
			}
			// The same demand again settles: nothing changes after a while.
			in := tt.in
			for i := 1; i <= 10; i++ {
				in.Current = d.Value.Slots
				d = b.Evaluate(t0.Add(time.Duration(i)*time.Minute), in)
			}
			if d.Changed {
				t.Errorf("still changing after 10 evaluations: %v (reason %q)", d.Value.Slots, d.Reason)
			}
		})
	}
}

// TestBudgetInvariants drives random demand and totals and checks that
// every allocation respects the bounds and the total.
func TestBudgetInvariants(t *testing.T) {
	cfg := BudgetConfig{Persist: 2, Hold: 10 * time.Second, MaxMoves: 2, MinSlots: 1,
		Models: []ModelSlots{{Name: "a", MinSlots: 2, MaxSlots: 5}, {Name: "c", MaxSlots: 3}}}
	names := []string{"a", "b", "c"}
	rng := rand.New(rand.NewPCG(1, 2))
	b := NewBudgeter(cfg)
	cur := map[string]int{"a": 2, "b": 2, "c": 2}
	total := 6
	for i := range 2000 {
		if i%50 == 0 {
			total = 4 + rng.IntN(8)
		}
		demand := map[string]Demand{}
		for _, m := range names {
			demand[m] = Demand{QueueDepth: rng.IntN(6), QueueAge: time.Duration(rng.IntN(3)) * time.Second, BusySlots: rng.IntN(4)}
		}
		d := b.Evaluate(t0.Add(time.Duration(i)*time.Second), BudgetInput{Total: total, Current: cur, Demand: demand})
		cur = d.Value.Slots
		if s := sum(cur); s != total {
			t.Fatalf("evaluation %d: %v sums to %d, total %d", i, cur, s, total)
		}
		for _, m := range names {
			lo, hi := cfg.bounds(m, total)
			if cur[m] < lo || cur[m] > hi {
				t.Fatalf("evaluation %d: %s has %d slots, bounds [%d, %d]", i, m, cur[m], lo, hi)
			}
		}
	}
}

func sum(m map[string]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// TestBudgetFailingModels is issue 16, item 5: two models whose every call
// fails (breakers cycling open and half-open, their retries queued) beside
// healthy ones took the slots, and kept them while the healthy models'
// demand grew. Budget follows demand that succeeds; a model whose breaker
// is not closed gets no more than its probes need.
func TestBudgetFailingModels(t *testing.T) {
	cfg := BudgetConfig{Persist: 3, Hold: 30 * time.Second, MaxMoves: 1, MinQueueAge: 500 * time.Millisecond, MinSlots: 1}
	failing := Demand{QueueDepth: 6, QueueAge: 5 * time.Second, BusySlots: 1, Failing: true, Probes: 1}
	busy := Demand{QueueDepth: 20, QueueAge: 3 * time.Second, BusySlots: 1, Throughput: 0.5}
	sec := time.Second

	t.Run("two slots: the healthy models take them back", func(t *testing.T) {
		start := map[string]int{"broken": 1, "broken2": 1, "herd-tiny": 0, "tiny": 0}
		demand := map[string]Demand{"broken": failing, "broken2": failing, "herd-tiny": busy, "tiny": idle}
		healthy := map[string]int{"broken": 0, "broken2": 0, "herd-tiny": 1, "tiny": 1}
		// Below their minimums, the healthy models are fitted at once.
		runBudget(t, cfg, start, []budgetStep{
			{0, 2, demand, healthy, true},
			{5 * sec, 2, demand, healthy, false},
			{60 * sec, 2, demand, healthy, false},
		})
	})
	t.Run("two slots: a failing model gives its slot back after persist", func(t *testing.T) {
		start := map[string]int{"broken": 1, "herd-tiny": 1}
		demand := map[string]Demand{"broken": failing, "herd-tiny": busy}
		calm := map[string]Demand{"broken": {}, "herd-tiny": busy}
		runBudget(t, cfg, start, []budgetStep{
			{0, 2, calm, start, false},
			{5 * sec, 2, demand, start, false},
			{10 * sec, 2, demand, start, false},
			{15 * sec, 2, demand, map[string]int{"broken": 0, "herd-tiny": 2}, true},
			{20 * sec, 2, demand, map[string]int{"broken": 0, "herd-tiny": 2}, false},
		})
	})
	tests := []struct {
		name   string
		demand map[string]Demand
		want   map[string]int
	}{
		{
			name:   "healthy demand before a failing model's minimum",
			demand: map[string]Demand{"broken": failing, "broken2": failing, "herd-tiny": busy, "tiny": idle},
			want:   map[string]int{"broken": 0, "broken2": 0, "herd-tiny": 3, "tiny": 1},
		},
		{
			name:   "probes get what the healthy models leave, no more",
			demand: map[string]Demand{"broken": failing, "broken2": {QueueDepth: 9, QueueAge: time.Second, BusySlots: 3, Failing: true, Probes: 2}, "herd-tiny": idle},
			want:   map[string]int{"broken": 1, "broken2": 2, "herd-tiny": 1},
		},
		{
			name:   "demand that fails counts for its successes only",
			demand: map[string]Demand{"flaky": {QueueDepth: 6, QueueAge: time.Second, BusySlots: 2, ErrorRate: 0.9}, "herd-tiny": {QueueDepth: 6, QueueAge: time.Second, BusySlots: 2}},
			want:   map[string]int{"flaky": 1, "herd-tiny": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBudgeter(BudgetConfig{Persist: 1, MaxMoves: 8, MinSlots: 1})
			cur := map[string]int{}
			for m := range tt.demand {
				cur[m] = 1
			}
			var d Decision[Allocation]
			for i := range 10 {
				d = b.Evaluate(t0.Add(time.Duration(i)*time.Minute), BudgetInput{Total: 4, Current: cur, Demand: tt.demand})
				cur = d.Value.Slots
			}
			if !maps.Equal(cur, tt.want) {
				t.Errorf("slots %v, want %v (reason %q)", cur, tt.want, d.Reason)
			}
		})
	}
}
