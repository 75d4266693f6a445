package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sutazai/herd/internal/slo"
)

// CapacityConfig bounds a capacity search and says what holding means.
type CapacityConfig struct {
	// Target is the service level a step must hold over all its
	// requests: p95, p99 and the share of errors and lost requests.
	// Default slo.Seed (p95 2s, p99 5s, errors 0.1%).
	Target slo.Target
	// Start is the first speed multiplier tried. Default 1.
	Start float64
	// Min and Max bound the multiplier. Default 1/64 and 1024.
	Min, Max float64
	// Precision ends the search once the lowest multiplier that failed is
	// within 1+Precision of the highest that held. Default 0.1.
	Precision float64
	// MaxSteps bounds the number of replays. Default 10.
	MaxSteps int
	// MaxTotal bounds the whole search: no step starts unless StepTime
	// still fits, and a running step is stopped when it is reached (its
	// replay then waits at most 5s more for answers due). Default 15m.
	MaxTotal time.Duration
	// StepTime is the most one step may take (its replay's duration and
	// drain). Required.
	StepTime time.Duration
}

// DefaultCapacityConfig returns the defaults, with StepTime unset.
func DefaultCapacityConfig() CapacityConfig {
	return CapacityConfig{Target: slo.Seed, Start: 1, Min: 1.0 / 64, Max: 1024, Precision: 0.1, MaxSteps: 10, MaxTotal: 15 * time.Minute}
}

// Validate fills in defaults and returns an error wrapping ErrBadConfig
// naming the first bad setting.
func (c *CapacityConfig) Validate() error {
	d := DefaultCapacityConfig()
	if c.Target == (slo.Target{}) {
		c.Target = d.Target
	}
	if c.Start == 0 {
		c.Start = d.Start
	}
	if c.Min == 0 {
		c.Min = d.Min
	}
	if c.Max == 0 {
		c.Max = d.Max
	}
	if c.Precision == 0 {
		c.Precision = d.Precision
	}
	if c.MaxSteps == 0 {
		c.MaxSteps = d.MaxSteps
	}
	if c.MaxTotal == 0 {
		c.MaxTotal = d.MaxTotal
	}
	switch {
	case c.Target.P95 <= 0 || c.Target.P99 < c.Target.P95:
		return fmt.Errorf("%w: p95 target must be positive and p99 at least p95", ErrBadConfig)
	case c.Target.ErrorRate < 0 || c.Target.ErrorRate >= 1:
		return fmt.Errorf("%w: error rate target %v must be 0 to below 1", ErrBadConfig, c.Target.ErrorRate)
	case !(c.Min > 0) || !(c.Max >= c.Min) || math.IsInf(c.Max, 0) || c.Start < c.Min || c.Start > c.Max:
		return fmt.Errorf("%w: speeds must satisfy 0 < min %v <= start %v <= max %v", ErrBadConfig, c.Min, c.Start, c.Max)
	case !(c.Precision > 0):
		return fmt.Errorf("%w: precision %v must be positive", ErrBadConfig, c.Precision)
	case c.MaxSteps < 1:
		return fmt.Errorf("%w: max steps %d must be at least 1", ErrBadConfig, c.MaxSteps)
	case c.StepTime <= 0 || c.MaxTotal < c.StepTime:
		return fmt.Errorf("%w: step time %v must be positive and within the total %v", ErrBadConfig, c.StepTime, c.MaxTotal)
	}
	return nil
}

// search is the pure core of a capacity search: which multiplier to try
// next given the results so far. It doubles from Start while steps hold,
// halves while they fail, then bisects (geometrically) between the
// highest that held and the lowest that failed.
type search struct {
	cfg    CapacityConfig
	lo, hi float64 // highest speed that held (0: none), lowest that failed (+Inf: none)
	tried  int
}

func newSearch(cfg CapacityConfig) *search { return &search{cfg: cfg, hi: math.Inf(1)} }

// record takes a step's result.
func (s *search) record(speed float64, held bool) {
	s.tried++
	if held {
		s.lo = max(s.lo, speed)
	} else {
		s.hi = min(s.hi, speed)
	}
}

// next returns the next speed to try, or ok false and why the search is
// over.
func (s *search) next() (speed float64, ok bool, why string) {
	switch {
	case s.tried == 0:
		return s.cfg.Start, true, ""
	case s.tried >= s.cfg.MaxSteps:
		return 0, false, fmt.Sprintf("max steps (%d) reached", s.cfg.MaxSteps)
	case math.IsInf(s.hi, 1):
		if s.lo >= s.cfg.Max {
			return 0, false, fmt.Sprintf("held at the max speed %s", FormatSpeed(s.cfg.Max))
		}
		return min(2*s.lo, s.cfg.Max), true, ""
	case s.lo == 0:
		if s.hi <= s.cfg.Min {
			return 0, false, fmt.Sprintf("missed even at the min speed %s", FormatSpeed(s.cfg.Min))
		}
		return max(s.hi/2, s.cfg.Min), true, ""
	case s.hi <= s.lo*(1+s.cfg.Precision):
		return 0, false, fmt.Sprintf("converged within %.0f%%", 100*s.cfg.Precision)
	}
	return round3(math.Sqrt(s.lo * s.hi)), true, ""
}

// round3 rounds a bisected speed to three significant digits, for
// readable steps.
func round3(v float64) float64 {
	scale := math.Pow(10, 2-math.Floor(math.Log10(v)))
	return math.Round(v*scale) / scale
}

// StepFunc runs one replay at speed multiplier speed and returns its
// report; ctx ends when the search's time is up.
type StepFunc func(ctx context.Context, speed float64) (*Report, error)

// Capacity is the result of a capacity search: every step, the highest
// arrival rate that held the target overall, and per priority and per
// model the highest rate of their own at which they held it.
type Capacity struct {
	Target CapacityTarget `json:"target"`
	// Steps are the replays in the order run.
	Steps []CapacityStep `json:"steps"`
	// Speed is the highest multiplier that held (0: none did); Rate its
	// measured arrival rate in requests per second, P95Ms and P99Ms its
	// latencies.
	Speed float64 `json:"speed"`
	Rate  float64 `json:"rate_per_second"`
	// ByPriority and ByModel are each group's capacity.
	ByPriority []GroupCapacity `json:"by_priority"`
	ByModel    []GroupCapacity `json:"by_model"`
	// Stopped says why the search ended.
	Stopped string `json:"stopped"`
	// Seconds is how long the search took.
	Seconds float64 `json:"seconds"`
	// Source describes the traffic (a capture file, the generated fleet).
	Source string `json:"source,omitempty"`
}

// CapacityTarget is the target in milliseconds, for JSON and reports.
type CapacityTarget struct {
	P95Ms     float64 `json:"p95_ms"`
	P99Ms     float64 `json:"p99_ms"`
	ErrorRate float64 `json:"error_rate"`
}

// CapacityStep is one replay of the search.
type CapacityStep struct {
	Speed float64 `json:"speed"`
	CapacityPoint
	// ByPriority and ByModel are the same figures per group.
	ByPriority map[string]CapacityPoint `json:"by_priority"`
	ByModel    map[string]CapacityPoint `json:"by_model"`
}

// CapacityPoint is a set of requests at one step: their arrival rate (sent per
// second of sending), latency percentiles of the answers, and the share of
// errors and lost requests; Held says whether the target was held.
type CapacityPoint struct {
	Rate      float64  `json:"rate_per_second"`
	Sent      int64    `json:"sent"`
	P50Ms     float64  `json:"p50_ms"`
	P95Ms     float64  `json:"p95_ms"`
	P99Ms     float64  `json:"p99_ms"`
	ErrorRate float64  `json:"error_rate"`
	Held      bool     `json:"held"`
	Misses    []string `json:"misses,omitempty"`
}

// GroupCapacity is one priority's or model's capacity: the step with the
// highest multiplier at which the group held the target, and its own
// arrival rate there (0 when it held at none).
type GroupCapacity struct {
	Name  string  `json:"name"`
	Speed float64 `json:"speed"`
	CapacityPoint
}

// SearchCapacity runs replays through run, at most cfg.MaxSteps of them
// and within cfg.MaxTotal, to find the highest speed multiplier at which
// the traffic holds cfg.Target. It returns the steps so far with the error
// of a replay that could not run, and ctx's error when ctx ended first.
func SearchCapacity(ctx context.Context, cfg CapacityConfig, run StepFunc) (*Capacity, error) {
	return searchCapacity(ctx, cfg, run, time.Now)
}

func searchCapacity(ctx context.Context, cfg CapacityConfig, run StepFunc, now func() time.Time) (*Capacity, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	begin := now()
	c := &Capacity{Target: CapacityTarget{P95Ms: durMs(cfg.Target.P95), P99Ms: durMs(cfg.Target.P99), ErrorRate: cfg.Target.ErrorRate}}
	sctx, cancel := context.WithTimeout(ctx, cfg.MaxTotal)
	defer cancel()
	s := newSearch(cfg)
	var err error
	for {
		speed, ok, why := s.next()
		if !ok {
			c.Stopped = why
			break
		}
		if now().Sub(begin)+cfg.StepTime > cfg.MaxTotal {
			c.Stopped = fmt.Sprintf("max total time (%v) reached", cfg.MaxTotal)
			break
		}
		if ctx.Err() != nil {
			c.Stopped, err = "canceled", ctx.Err()
			break
		}
		rep, rerr := run(sctx, speed)
		if rerr != nil {
			c.Stopped, err = "a replay failed", fmt.Errorf("replay at %s: %w", FormatSpeed(speed), rerr)
			break
		}
		if ctx.Err() != nil {
			// Cut short by the caller: its figures are not a step.
			c.Stopped, err = "canceled", ctx.Err()
			break
		}
		st := judgeStep(rep, speed, cfg.Target)
		if sctx.Err() != nil {
			// Cut at the time bound: the step is kept (its late answers
			// counted as lost) but said so.
			st.Held = false
			st.Misses = append(st.Misses, "stopped at the max total time")
		}
		c.Steps = append(c.Steps, st)
		s.record(speed, st.Held)
		if sctx.Err() != nil {
			c.Stopped = fmt.Sprintf("max total time (%v) reached", cfg.MaxTotal)
			break
		}
	}
	c.Seconds = now().Sub(begin).Seconds()
	c.summarize()
	return c, err
}

// judgeStep measures a step's report against target, overall and per
// priority and model.
func judgeStep(rep *Report, speed float64, target slo.Target) CapacityStep {
	secs := rep.SendSeconds
	st := CapacityStep{Speed: speed, ByPriority: map[string]CapacityPoint{}, ByModel: map[string]CapacityPoint{}}
	st.CapacityPoint = point(rep.Latency, rep.Sent, rep.Errors, rep.Lost, secs, target)
	for name, s := range rep.ByPriority {
		st.ByPriority[name] = point(s, s.Sent, s.Errors, s.Lost, secs, target)
	}
	for name, s := range rep.ByModel {
		st.ByModel[name] = point(s, s.Sent, s.Errors, s.Lost, secs, target)
	}
	return st
}

func point(lat *Summary, sent, errs, lost int64, secs float64, target slo.Target) CapacityPoint {
	p := CapacityPoint{Sent: sent}
	if secs > 0 {
		p.Rate = float64(sent) / secs
	}
	if lat != nil {
		p.P50Ms, p.P95Ms, p.P99Ms = lat.P50Ms, lat.P95Ms, lat.P99Ms
	}
	if sent > 0 {
		p.ErrorRate = float64(errs+lost) / float64(sent)
	}
	if sent == 0 {
		p.Misses = []string{"nothing sent"}
	} else {
		p.Misses = target.Misses(slo.Measured{Count: sent, P95: msDur(p.P95Ms), P99: msDur(p.P99Ms), ErrorRate: p.ErrorRate})
		if lat == nil || lat.Answered == 0 {
			p.Misses = append(p.Misses, "nothing answered")
		}
	}
	p.Held = len(p.Misses) == 0
	return p
}

// summarize sets the overall and per-group capacities from the steps.
func (c *Capacity) summarize() {
	c.Speed, c.Rate = 0, 0
	for _, st := range c.Steps {
		if st.Held && st.Speed > c.Speed {
			c.Speed, c.Rate = st.Speed, st.Rate
		}
	}
	group := func(get func(CapacityStep) map[string]CapacityPoint) []GroupCapacity {
		best := map[string]GroupCapacity{}
		for _, st := range c.Steps {
			for name, p := range get(st) {
				g, ok := best[name]
				if !ok {
					g = GroupCapacity{Name: name}
				}
				if p.Held && st.Speed > g.Speed {
					g.Speed, g.CapacityPoint = st.Speed, p
				}
				best[name] = g
			}
		}
		out := make([]GroupCapacity, 0, len(best))
		for _, g := range best {
			out = append(out, g)
		}
		slices.SortFunc(out, func(a, b GroupCapacity) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	c.ByPriority = group(func(st CapacityStep) map[string]CapacityPoint { return st.ByPriority })
	c.ByModel = group(func(st CapacityStep) map[string]CapacityPoint { return st.ByModel })
}

// WriteJSON writes the search as indented JSON.
func (c *Capacity) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// WriteText writes the steps and the capacities as a table.
func (c *Capacity) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "speed\trate/s\tsent\tp50\tp95\tp99\terrors\theld\t\n")
	for _, st := range c.Steps {
		held := "yes"
		if !st.Held {
			held = "no: " + strings.Join(st.Misses, ", ")
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%d\t%s\t%s\t%s\t%s\t%s\t\n", FormatSpeed(st.Speed), st.Rate, st.Sent,
			ms(st.P50Ms), ms(st.P95Ms), ms(st.P99Ms), slo.Percent(st.ErrorRate), held)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\ntarget: p95 < %v, p99 < %v, errors < %s; search stopped: %s (%.0fs)\n",
		msDur(c.Target.P95Ms), msDur(c.Target.P99Ms), slo.Percent(c.Target.ErrorRate), c.Stopped, c.Seconds)
	if c.Speed > 0 {
		fmt.Fprintf(&b, "capacity: %.2f requests/s (speed %s)\n", c.Rate, FormatSpeed(c.Speed))
	} else {
		b.WriteString("capacity: the target was held at no speed tried\n")
	}
	for _, g := range []struct {
		kind   string
		groups []GroupCapacity
	}{{"priority", c.ByPriority}, {"model", c.ByModel}} {
		for _, gc := range g.groups {
			kind := g.kind
			if gc.Speed > 0 {
				fmt.Fprintf(&b, "  %s %-16s %8.2f requests/s (its own, at %s; p95 %s ms, p99 %s ms)\n", kind, gc.Name, gc.Rate, FormatSpeed(gc.Speed), ms(gc.P95Ms), ms(gc.P99Ms))
			} else {
				fmt.Fprintf(&b, "  %s %-16s held at no speed tried\n", kind, gc.Name)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
