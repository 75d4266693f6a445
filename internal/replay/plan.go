package replay

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sutazai/herd/internal/capture"
)

// MaxSpeed is the speed that sends every request as fast as possible
// (bounded by Config.Concurrency): --speed max.
var MaxSpeed = math.Inf(1)

// ParseSpeed reads a --speed value: a positive number ("0.5", "1", "10",
// also with a trailing "x") or "max" (MaxSpeed). Other values return an
// error wrapping ErrBadSpeed.
func ParseSpeed(s string) (float64, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "max" {
		return MaxSpeed, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "x"), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%w: %q is not a positive number or max", ErrBadSpeed, s)
	}
	return v, nil
}

// FormatSpeed returns "max" for MaxSpeed and "<v>x" otherwise.
func FormatSpeed(v float64) string {
	if math.IsInf(v, 1) {
		return "max"
	}
	return strconv.FormatFloat(v, 'g', -1, 64) + "x"
}

// PlanConfig says how captured records become a schedule.
type PlanConfig struct {
	// Speed divides the capture's time offsets: 2 plays it twice as fast,
	// 0.5 at half speed, MaxSpeed sends every step at offset 0. Default 1.
	Speed float64
	// Duration ends the schedule before the first step whose offset is
	// Duration or later. At MaxSpeed the offsets are all 0, so the
	// Replayer applies it to the wall clock instead. 0 (default): no limit.
	Duration time.Duration
	// Loop plays the capture again after its end, offsets continuing, until
	// Duration (or until the run is stopped). Default false.
	Loop bool
	// Filter selects the records to play (default all).
	Filter Filter
	// Seed orders records that have the same timestamp (records of one
	// agent always keep their capture order). Default 1.
	Seed int64
}

// Step is one request of the schedule.
type Step struct {
	// Seq numbers the steps from 0; it is unique within a run and the
	// request id is <run-id>-<Seq>.
	Seq int
	// Index is the record's position in Plan.Records.
	Index int
	// Loop counts the passes over the capture, from 0.
	Loop int
	// Offset is when the step is to be sent, from the start of the run.
	Offset time.Duration
	// Record is the captured request; Payload is its body to send. Both
	// are shared with the Plan and must not be modified.
	Record  *capture.Record
	Payload []byte
}

// Plan is a replay schedule: the selected records in time order, each at
// its offset from the first record divided by the speed. It is pure (no
// clock, no I/O) and not safe for concurrent use.
type Plan struct {
	cfg      PlanConfig
	recs     []capture.Record
	payloads [][]byte
	base     []time.Duration // offset of each record from the first, unscaled
	period   time.Duration   // capture time of one loop
	next     int
}

// NewPlan builds the schedule for recs (which it does not modify). It
// returns ErrNoRecords when the filter leaves nothing, and an error
// wrapping ErrBadConfig for a speed that is not positive.
func NewPlan(recs []capture.Record, cfg PlanConfig) (*Plan, error) {
	if !(cfg.Speed > 0) {
		return nil, fmt.Errorf("%w: speed %v must be positive", ErrBadConfig, cfg.Speed)
	}
	if cfg.Duration < 0 {
		return nil, fmt.Errorf("%w: duration %v must not be negative", ErrBadConfig, cfg.Duration)
	}
	var sel []capture.Record
	for i := range recs {
		if cfg.Filter.Match(&recs[i]) {
			sel = append(sel, recs[i])
		}
	}
	if len(sel) == 0 {
		return nil, ErrNoRecords
	}
	slices.SortStableFunc(sel, func(a, b capture.Record) int { return a.Time.Compare(b.Time) })
	breakTies(sel, cfg.Seed)
	p := &Plan{cfg: cfg, recs: sel, payloads: make([][]byte, len(sel)), base: make([]time.Duration, len(sel))}
	for i := range sel {
		p.payloads[i] = sel[i].Payload()
		p.base[i] = sel[i].Time.Sub(sel[0].Time)
	}
	span := p.base[len(sel)-1]
	// One loop lasts the capture's span plus one mean gap between records,
	// so the next pass does not start on top of the last record.
	gap := time.Second
	if len(sel) > 1 && span > 0 {
		gap = span / time.Duration(len(sel)-1)
	}
	p.period = span + gap
	return p, nil
}

// breakTies orders each run of records with the same timestamp at random
// (from seed), while the records of one agent keep their relative order.
func breakTies(recs []capture.Record, seed int64) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6865726472706c79))
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].Time.Equal(recs[i].Time) {
			j++
		}
		if j-i > 1 {
			group := recs[i:j]
			orig := slices.Clone(group)
			rng.Shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
			// Give each agent's slots back its records in capture order.
			byAgent := map[string][]capture.Record{}
			for _, r := range orig {
				byAgent[r.Agent] = append(byAgent[r.Agent], r)
			}
			for k := range group {
				a := group[k].Agent
				group[k], byAgent[a] = byAgent[a][0], byAgent[a][1:]
			}
		}
		i = j
	}
}

// Records returns the selected records in schedule order. The slice is
// the plan's own; do not modify it.
func (p *Plan) Records() []capture.Record { return p.recs }

// Span returns the time between the first and the last selected record
// in the capture (unscaled).
func (p *Plan) Span() time.Duration { return p.base[len(p.base)-1] }

// Speed returns the plan's speed.
func (p *Plan) Speed() float64 { return p.cfg.Speed }

// Next returns the next step, or false when the schedule has ended (after
// the last record, or at the duration). It never blocks.
func (p *Plan) Next() (Step, bool) {
	n := len(p.recs)
	seq := p.next
	i, loop := seq%n, seq/n
	if loop > 0 && !p.cfg.Loop {
		return Step{}, false
	}
	var off time.Duration
	if !math.IsInf(p.cfg.Speed, 1) {
		raw := time.Duration(loop)*p.period + p.base[i]
		off = time.Duration(math.Round(float64(raw) / p.cfg.Speed))
		if p.cfg.Duration > 0 && off >= p.cfg.Duration {
			return Step{}, false
		}
	}
	p.next++
	return Step{Seq: seq, Index: i, Loop: loop, Offset: off, Record: &p.recs[i], Payload: p.payloads[i]}, true
}

// Total returns how many steps the whole schedule has, or -1 when it is
// unbounded (a loop without a duration, or with one at MaxSpeed, ends on
// the wall clock). It does not move the plan.
func (p *Plan) Total() int {
	maxSpeed := math.IsInf(p.cfg.Speed, 1)
	switch {
	case !p.cfg.Loop && (p.cfg.Duration == 0 || maxSpeed):
		return len(p.recs)
	case p.cfg.Loop && (p.cfg.Duration == 0 || maxSpeed):
		return -1
	}
	q := *p
	q.next = 0
	n := 0
	for {
		if _, ok := q.Next(); !ok {
			return n
		}
		n++
	}
}
