package pool

import (
	"fmt"
	"maps"
	"slices"
)

// Slot is one instance's place on the host: its index (0, 1, ...) and the
// cores it is pinned to, the Index-th run of CoresPerInstance cores.
// An instance keeps its slot for its whole life.
type Slot struct {
	Index int
	CPUs  []int
}

// Input is what Plan decides from.
type Input struct {
	// Auto follows Want as the optimizer's decision; otherwise Want is the
	// fixed count.
	Auto bool
	// Want is the instances asked for; in auto mode 0 means no decision
	// yet.
	Want int
	// Cores are the cores the pool shares out, in order.
	Cores []int
	// CoresPerInstance is each instance's cores (at least 1).
	CoresPerInstance int
	// Min and Max bound an auto pool; Max 0 means the cores.
	Min, Max int
	// Running are the slot indexes of the instances running now.
	Running []int
}

// Target is the set of instances to run and how to get there from Input.Running.
type Target struct {
	// Count is the instances to run.
	Count int
	// Slots are their slots, by index.
	Slots []Slot
	// Start are the slots to start, lowest index first; Stop the running
	// ones to drain, highest index first.
	Start, Stop []Slot
	// Reason says why, with the figures.
	Reason string
}

// Capacity returns how many instances of perInstance cores the cores hold.
func Capacity(cores []int, perInstance int) int {
	if perInstance < 1 {
		return 0
	}
	return len(cores) / perInstance
}

// SlotOf returns slot i's cores.
func SlotOf(cores []int, perInstance, i int) Slot {
	return Slot{Index: i, CPUs: slices.Clone(cores[i*perInstance : (i+1)*perInstance])}
}

// Bounds returns the fewest and most instances an auto pool runs on cores:
// [Min, Max] within [1, Capacity]. hi is 0 when the cores hold none.
func Bounds(in Input) (lo, hi int) {
	hi = Capacity(in.Cores, in.CoresPerInstance)
	if in.Max > 0 {
		hi = min(hi, in.Max)
	}
	lo = min(max(in.Min, 1), hi)
	return lo, hi
}

// Plan decides the instances to run. An auto pool runs the decision within
// Bounds, and before any decision keeps what runs (at least lo); a fixed
// pool runs Want, at most what the cores hold. Running instances keep their
// slots: the lowest running indexes stay, free slots are filled from the
// lowest index, and the highest running ones are drained first. Plan does
// no I/O.
func Plan(in Input) Target {
	lo, hi := Bounds(in)
	capacity := Capacity(in.Cores, in.CoresPerInstance)
	var n int
	var reason string
	switch {
	case hi == 0:
		return Target{Stop: slotsOf(in, sortedDesc(in.Running)), Reason: fmt.Sprintf("%d cores hold no instance of %d cores", len(in.Cores), in.CoresPerInstance)}
	case !in.Auto:
		n = min(max(in.Want, 1), capacity)
		reason = fmt.Sprintf("fixed at %d", in.Want)
		if n != in.Want {
			reason = fmt.Sprintf("fixed at %d, but %d cores hold %d instances of %d cores", in.Want, len(in.Cores), capacity, in.CoresPerInstance)
		}
	case in.Want == 0:
		n = min(max(len(in.Running), lo), hi)
		reason = fmt.Sprintf("no decision yet: %d within [%d, %d]", n, lo, hi)
	default:
		n = min(max(in.Want, lo), hi)
		reason = fmt.Sprintf("optimizer decided %d: %d within [%d, %d] (%d cores, %d per instance)", in.Want, n, lo, hi, len(in.Cores), in.CoresPerInstance)
	}

	running := map[int]bool{}
	for _, i := range in.Running {
		if i >= 0 && i < capacity {
			running[i] = true
		}
	}
	keep := map[int]bool{}
	for _, i := range slices.Sorted(maps.Keys(running)) {
		if len(keep) < n {
			keep[i] = true
		}
	}
	t := Target{Count: n, Reason: reason}
	for i := 0; len(keep) < n && i < capacity; i++ {
		if !keep[i] {
			keep[i] = true
			t.Start = append(t.Start, SlotOf(in.Cores, in.CoresPerInstance, i))
		}
	}
	for _, i := range slices.Sorted(maps.Keys(keep)) {
		t.Slots = append(t.Slots, SlotOf(in.Cores, in.CoresPerInstance, i))
	}
	var stop []int
	for _, i := range in.Running {
		if !keep[i] {
			stop = append(stop, i)
		}
	}
	t.Stop = slotsOf(in, sortedDesc(stop))
	return t
}

// slotsOf returns the slots of indexes; an index beyond the cores gets no
// CPUs (an instance left from a larger core set, to be stopped).
func slotsOf(in Input, idx []int) []Slot {
	var out []Slot
	for _, i := range idx {
		if i >= 0 && i < Capacity(in.Cores, in.CoresPerInstance) {
			out = append(out, SlotOf(in.Cores, in.CoresPerInstance, i))
		} else {
			out = append(out, Slot{Index: i})
		}
	}
	return out
}

func sortedDesc(idx []int) []int {
	s := slices.Clone(idx)
	slices.Sort(s)
	slices.Reverse(s)
	return slices.Compact(s)
}
