package policy

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// BudgetConfig is the CPU budget policy: how the fleet's slots are shared
// between models.
type BudgetConfig struct {
	// Persist is how many consecutive evaluations a model must want more
	// slots, and another fewer, before a slot moves between them, so that a
	// short imbalance moves nothing. Default 3.
	Persist int `koanf:"persist"`
	// Hold is how long a model that gained a slot keeps it, and a model
	// that lost one waits before it gains one, so that a move is not undone
	// at once. Default 30s.
	Hold time.Duration `koanf:"hold"`
	// MaxMoves is the most slots moved in one evaluation. Default 1.
	MaxMoves int `koanf:"max_moves"`
	// MinQueueAge is how long the oldest queued request of a model must
	// have waited before its queue counts as demand; a younger queue drains
	// within a batch. Default 500ms.
	MinQueueAge time.Duration `koanf:"min_queue_age"`
	// MinSlots is the least slots of a model not listed in Models, so that
	// every model can run. Default 1.
	MinSlots int `koanf:"min_slots"`
	// MaxSlots is the most slots of a model not listed in Models; 0 means
	// only the total limits it. Default 0.
	MaxSlots int `koanf:"max_slots"`
	// Models overrides MinSlots and MaxSlots for the models listed.
	// Default none.
	Models []ModelSlots `koanf:"models"`
}

// ModelSlots are one model's slot bounds.
type ModelSlots struct {
	// Name is the model as Ollama names it. Required.
	Name string `koanf:"name"`
	// MinSlots is the model's least slots. Default 0.
	MinSlots int `koanf:"min_slots"`
	// MaxSlots is the model's most slots; 0 means only the total limits
	// it. Default 0.
	MaxSlots int `koanf:"max_slots"`
}

// DefaultBudgetConfig returns the defaults.
func DefaultBudgetConfig() BudgetConfig {
	return BudgetConfig{
		Persist:     3,
		Hold:        30 * time.Second,
		MaxMoves:    1,
		MinQueueAge: 500 * time.Millisecond,
		MinSlots:    1,
	}
}

// Validate reports a setting that cannot work.
func (c BudgetConfig) Validate() error {
	var errs []error
	if c.Persist < 1 {
		errs = append(errs, errors.New("policy: budget: persist must be at least 1"))
	}
	if c.Hold < 0 || c.MinQueueAge < 0 {
		errs = append(errs, errors.New("policy: budget: hold and min_queue_age must not be negative"))
	}
	if c.MaxMoves < 1 {
		errs = append(errs, errors.New("policy: budget: max_moves must be at least 1"))
	}
	if c.MinSlots < 0 || c.MaxSlots < 0 || (c.MaxSlots > 0 && c.MinSlots > c.MaxSlots) {
		errs = append(errs, errors.New("policy: budget: min_slots and max_slots must not be negative, and min_slots at most max_slots"))
	}
	seen := map[string]bool{}
	for i, m := range c.Models {
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("policy: budget: models[%d]: name is required", i))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("policy: budget: models[%d]: name %q is listed twice", i, m.Name))
		}
		seen[m.Name] = true
		if m.MinSlots < 0 || m.MaxSlots < 0 || (m.MaxSlots > 0 && m.MinSlots > m.MaxSlots) {
			errs = append(errs, fmt.Errorf("policy: budget: models[%d]: min_slots and max_slots of %q must not be negative, and min_slots at most max_slots", i, m.Name))
		}
	}
	return errors.Join(errs...)
}

// bounds returns model's least and most slots out of total.
func (c BudgetConfig) bounds(model string, total int) (lo, hi int) {
	lo, hi = c.MinSlots, c.MaxSlots
	for _, m := range c.Models {
		if m.Name == model {
			lo, hi = m.MinSlots, m.MaxSlots
			break
		}
	}
	if hi <= 0 || hi > total {
		hi = total
	}
	return min(lo, hi), hi
}

// Demand is what one model asks of the fleet, measured over the optimizer's
// window.
type Demand struct {
	// QueueDepth is how many of its requests wait (dispatcher and batches).
	QueueDepth int
	// QueueAge is how long the oldest of them has waited.
	QueueAge time.Duration
	// Throughput is requests completed per second; it is reported in the
	// decisions' numbers.
	Throughput float64
	// BusySlots is how many of its calls run now.
	BusySlots int
	// ErrorRate is the share of its requests that failed over the window
	// (0 to 1): demand counts for the share that succeeds.
	ErrorRate float64
	// Failing reports that its breaker is not closed: its calls fail, and
	// its queue is mostly retries, so it gets no more than its probes
	// need, and only what the healthy models leave.
	Failing bool
	// Probes is how many calls its breaker lets out at once while
	// half-open (breaker.half_open_probes); read when Failing.
	Probes int
}

// BudgetInput is one evaluation's view of the fleet. The models considered
// are the keys of Current and Demand together.
type BudgetInput struct {
	// Total is the slots (or cores: any unit) to share between models.
	Total int
	// Current is the slots per model now.
	Current map[string]int
	// Demand is the demand per model; a model missing has none.
	Demand map[string]Demand
}

// Allocation is the value of a KindBudget decision.
type Allocation struct {
	// Slots is the slots per model. It is a new map the caller may keep.
	Slots map[string]int `json:"slots"`
	// Moves are the slots moved by this evaluation, in order.
	Moves []Move `json:"moves,omitempty"`
	// Resized reports that Current did not fit the total or the bounds and
	// was fitted at once, without hysteresis.
	Resized bool `json:"resized,omitempty"`
}

// Move is one slot moved from one model to another.
type Move struct {
	// From is the model that lost the slot.
	From string `json:"from"`
	// To is the model that gained it.
	To string `json:"to"`
}

// Budgeter shares the fleet's slots between models by demand. A model's
// target is its minimum, then a max-min fair share of the slots its busy
// calls and aged queue could use, then an even share of what is left; the
// allocation moves towards the target one slot at a time, only after both
// sides of a move have persisted for Persist evaluations and outside their
// Hold. It is not safe for concurrent use.
type Budgeter struct {
	cfg    BudgetConfig
	models map[string]*budgetState
}

// budgetState is one model's hysteresis.
type budgetState struct {
	// under and over count consecutive evaluations with the target above
	// and below the allocation.
	under, over int
	// gained and lost are when the model last gained and lost a slot.
	gained, lost time.Time
}

// NewBudgeter returns a budgeter with no history. cfg must be valid.
func NewBudgeter(cfg BudgetConfig) *Budgeter {
	return &Budgeter{cfg: cfg, models: map[string]*budgetState{}}
}

// Evaluate decides the allocation at now. Models that disappeared from the
// input lose their history.
func (b *Budgeter) Evaluate(now time.Time, in BudgetInput) Decision[Allocation] {
	names := budgetModels(in)
	total := max(in.Total, 0)
	lo, hi, want, failing := b.limits(names, in.Demand, total)
	target := waterfill(names, lo, hi, want, failing, total)

	cur := make(map[string]int, len(names))
	for _, m := range names {
		cur[m] = in.Current[m]
	}
	resized := fit(names, cur, lo, hi, target)

	b.track(names, cur, target)
	moves := b.move(now, names, cur, target)
	return Decision[Allocation]{
		Kind:    KindBudget,
		Value:   Allocation{Slots: cur, Moves: moves, Resized: resized},
		Changed: resized || len(moves) > 0,
		Reason:  b.reason(now, names, in, cur, target, moves, resized),
		Numbers: budgetNumbers(names, in.Demand, total, cur, target, want, len(moves)),
	}
}

// budgetModels are the models of Current and Demand together, sorted.
func budgetModels(in BudgetInput) []string {
	names := slices.Sorted(maps.Keys(in.Current))
	for m := range in.Demand {
		if _, ok := in.Current[m]; !ok {
			names = append(names, m)
		}
	}
	slices.Sort(names)
	return names
}

// limits returns each model's least and most slots out of total, the slots
// it wants, and whether it is failing: a failing model gets no more than
// its probes.
func (b *Budgeter) limits(names []string, demand map[string]Demand, total int) (lo, hi, want map[string]int, failing map[string]bool) {
	lo, hi, want = map[string]int{}, map[string]int{}, map[string]int{}
	failing = map[string]bool{}
	for _, m := range names {
		d := demand[m]
		lo[m], hi[m] = b.cfg.bounds(m, total)
		want[m] = b.want(d)
		if d.Failing {
			failing[m] = true
			hi[m] = min(hi[m], probes(d))
			lo[m] = min(lo[m], hi[m])
		}
	}
	return lo, hi, want, failing
}

// track forgets the models no longer in names and counts, for each of the
// others, the consecutive evaluations with its target above or below its
// allocation cur.
func (b *Budgeter) track(names []string, cur, target map[string]int) {
	for m := range b.models {
		if !slices.Contains(names, m) {
			delete(b.models, m)
		}
	}
	for _, m := range names {
		st := b.state(m)
		switch {
		case target[m] > cur[m]:
			st.under, st.over = st.under+1, 0
		case target[m] < cur[m]:
			st.under, st.over = 0, st.over+1
		default:
			st.under, st.over = 0, 0
		}
	}
}

// move moves up to MaxMoves slots in cur, each from a donor to a receiver
// whose imbalance has persisted outside its hold, and returns the moves.
func (b *Budgeter) move(now time.Time, names []string, cur, target map[string]int) []Move {
	var moves []Move
	for range b.cfg.MaxMoves {
		to, from := b.receiver(now, names, cur, target), b.donor(now, names, cur, target)
		if to == "" || from == "" {
			break
		}
		cur[to]++
		cur[from]--
		b.models[to].gained = now
		b.models[from].lost = now
		moves = append(moves, Move{From: from, To: to})
	}
	return moves
}

// budgetNumbers are the decision's numbers: the total, the slots moved, and
// each model's allocation, target, demand and health.
func budgetNumbers(names []string, demand map[string]Demand, total int, cur, target, want map[string]int, moved int) map[string]float64 {
	numbers := map[string]float64{"total": float64(total), "moved": float64(moved)}
	for _, m := range names {
		d := demand[m]
		numbers["slots/"+m] = float64(cur[m])
		numbers["target/"+m] = float64(target[m])
		numbers["demand_slots/"+m] = float64(want[m])
		numbers["queue_depth/"+m] = float64(d.QueueDepth)
		numbers["queue_age_seconds/"+m] = d.QueueAge.Seconds()
		numbers["busy_slots/"+m] = float64(d.BusySlots)
		numbers["throughput_per_second/"+m] = d.Throughput
		if d.ErrorRate > 0 {
			numbers["error_rate/"+m] = d.ErrorRate
		}
		if d.Failing {
			numbers["failing/"+m] = 1
			numbers["probes/"+m] = float64(probes(d))
		}
	}
	return numbers
}

// want returns the slots a model could use now: its busy calls plus its
// queue once the queue has aged, times the share of its requests that
// succeed (rounded up), and no more than its probes while it is failing:
// retries and queues of a failing model are not demand.
func (b *Budgeter) want(d Demand) int {
	w := max(d.BusySlots, 0)
	if d.QueueDepth > 0 && d.QueueAge >= b.cfg.MinQueueAge {
		w += d.QueueDepth
	}
	if d.Failing {
		return min(w, probes(d))
	}
	if d.ErrorRate > 0 {
		w = int(math.Ceil(float64(w) * (1 - min(d.ErrorRate, 1))))
	}
	return w
}

// probes returns the most slots a failing model's probes need: at least 1.
func probes(d Demand) int { return max(d.Probes, 1) }

func (b *Budgeter) state(m string) *budgetState {
	st := b.models[m]
	if st == nil {
		st = &budgetState{}
		b.models[m] = st
	}
	return st
}

// receiver returns the model most short of its target that may gain a slot
// now, or "".
func (b *Budgeter) receiver(now time.Time, names []string, cur, target map[string]int) string {
	best, gap := "", 0
	for _, m := range names {
		st := b.models[m]
		if g := target[m] - cur[m]; g > gap && st.under >= b.cfg.Persist && !b.held(now, st.lost) {
			best, gap = m, g
		}
	}
	return best
}

// donor returns the model most above its target that may lose a slot now,
// or "".
func (b *Budgeter) donor(now time.Time, names []string, cur, target map[string]int) string {
	best, gap := "", 0
	for _, m := range names {
		st := b.models[m]
		if g := cur[m] - target[m]; g > gap && st.over >= b.cfg.Persist && !b.held(now, st.gained) {
			best, gap = m, g
		}
	}
	return best
}

// held reports whether a change at t still holds at now.
func (b *Budgeter) held(now, t time.Time) bool {
	return !t.IsZero() && now.Sub(t) < b.cfg.Hold
}

func (b *Budgeter) reason(now time.Time, names []string, in BudgetInput, cur, target map[string]int, moves []Move, resized bool) string {
	var parts []string
	if resized {
		parts = append(parts, fmt.Sprintf("allocation fitted to %d slots and the bounds", max(in.Total, 0)))
	}
	for _, mv := range moves {
		d := in.Demand[mv.To]
		parts = append(parts, fmt.Sprintf("moved 1 slot from %s to %s: %s has %d queued (oldest %s) for %d evaluations, %s runs %d calls on %d slots",
			mv.From, mv.To, mv.To, d.QueueDepth, d.QueueAge.Round(time.Millisecond), b.models[mv.To].under,
			mv.From, in.Demand[mv.From].BusySlots, in.Current[mv.From]))
	}
	if len(parts) > 0 {
		return strings.Join(parts, "; ")
	}
	// Say first why a model that wants more does not get it.
	for _, under := range []bool{true, false} {
		for _, m := range names {
			st := b.models[m]
			switch {
			case under && target[m] > cur[m] && st.under < b.cfg.Persist:
				return fmt.Sprintf("no change: %s wants %s, has %d, for %d of %d evaluations", m, slots(target[m]), cur[m], st.under, b.cfg.Persist)
			case under && target[m] > cur[m] && b.held(now, st.lost):
				return fmt.Sprintf("no change: %s wants %s, has %d, but lost one %s ago (hold %s)", m, slots(target[m]), cur[m], now.Sub(st.lost), b.cfg.Hold)
			case !under && target[m] < cur[m] && st.over < b.cfg.Persist:
				return fmt.Sprintf("no change: %s needs %s, has %d, for %d of %d evaluations", m, slots(target[m]), cur[m], st.over, b.cfg.Persist)
			case !under && target[m] < cur[m] && b.held(now, st.gained):
				return fmt.Sprintf("no change: %s needs %s, has %d, but gained one %s ago (hold %s)", m, slots(target[m]), cur[m], now.Sub(st.gained), b.cfg.Hold)
			}
		}
	}
	return "no change: the allocation matches demand"
}

// slots formats a number of slots.
func slots(n int) string {
	if n == 1 {
		return "1 slot"
	}
	return fmt.Sprintf("%d slots", n)
}

// waterfill returns the target slots per model out of total: first each
// model's minimum (evenly, busiest first, when the minimums do not fit),
// then max-min fair shares of demand, then an even share of the rest, all
// within the maximums. Failing models come after the others at each step
// but the last: their minimums and demand are served from what the
// healthy models' minimums and demand leave.
func waterfill(names []string, lo, hi, want map[string]int, failing map[string]bool, total int) map[string]int {
	t := make(map[string]int, len(names))
	rem := total
	// give adds one slot to the eligible model with the least score, ties
	// broken by larger demand, then name; it reports whether it did.
	give := func(eligible func(m string) bool, score func(m string) int) bool {
		best := ""
		for _, m := range names {
			if t[m] >= hi[m] || !eligible(m) {
				continue
			}
			if best == "" || score(m) < score(best) || (score(m) == score(best) && want[m] > want[best]) {
				best = m
			}
		}
		if best == "" {
			return false
		}
		t[best]++
		rem--
		return true
	}
	level := func(m string) int { return t[m] }
	for _, f := range []bool{false, true} {
		for rem > 0 && give(func(m string) bool { return failing[m] == f && t[m] < lo[m] }, level) {
		}
		for rem > 0 && give(func(m string) bool { return failing[m] == f && t[m] < want[m] }, level) {
		}
	}
	for _, f := range []bool{false, true} {
		for rem > 0 && give(func(m string) bool { return failing[m] == f }, level) {
		}
	}
	return t
}

// fit changes cur in place to respect the bounds and sum to the target's
// total, moving the fewest slots, and reports whether it changed anything.
func fit(names []string, cur, lo, hi, target map[string]int) bool {
	changed := false
	sum, want := 0, 0
	for _, m := range names {
		// The target is below the minimum only when the minimums do not
		// fit the total.
		if c := clamp(cur[m], min(lo[m], target[m]), hi[m]); c != cur[m] {
			cur[m], changed = c, true
		}
		sum += cur[m]
		want += target[m]
	}
	// pick returns the model with the largest sign*(cur-target) that can
	// move in that direction.
	pick := func(sign int) string {
		best, gap := "", 0
		for _, m := range names {
			if sign > 0 && cur[m] <= 0 || sign < 0 && cur[m] >= hi[m] {
				continue
			}
			if g := sign * (cur[m] - target[m]); best == "" || g > gap {
				best, gap = m, g
			}
		}
		return best
	}
	for ; sum > want; sum-- {
		cur[pick(1)]--
		changed = true
	}
	for ; sum < want; sum++ {
		cur[pick(-1)]++
		changed = true
	}
	return changed
}
