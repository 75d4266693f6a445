package policy

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ScaleConfig is the worker-instance recommendation for an external
// autoscaler.
type ScaleConfig struct {
	// MinInstances is the fewest instances recommended. Default 2.
	MinInstances int `koanf:"min_instances"`
	// MaxInstances is the most instances recommended. Default 4.
	MaxInstances int `koanf:"max_instances"`
	// TargetUtilization is the share of an instance's slots the
	// recommendation aims to keep busy (0 to 1], leaving room for bursts.
	// Default 0.75.
	TargetUtilization float64 `koanf:"target_utilization"`
	// UpAfter is how many consecutive evaluations must want more instances
	// before the recommendation rises. Default 2.
	UpAfter int `koanf:"up_after"`
	// DownAfter is how many consecutive evaluations must want fewer
	// instances before the recommendation falls. Default 6.
	DownAfter int `koanf:"down_after"`
	// DownHold is how long after any change the recommendation does not
	// fall, since starting an instance costs more than running it idle for
	// a while. Default 5m.
	DownHold time.Duration `koanf:"down_hold"`
}

// DefaultScaleConfig returns the defaults.
func DefaultScaleConfig() ScaleConfig {
	return ScaleConfig{
		MinInstances:      2,
		MaxInstances:      4,
		TargetUtilization: 0.75,
		UpAfter:           2,
		DownAfter:         6,
		DownHold:          5 * time.Minute,
	}
}

// Validate reports a setting that cannot work.
func (c ScaleConfig) Validate() error {
	var errs []error
	if c.MinInstances < 1 || c.MaxInstances < c.MinInstances {
		errs = append(errs, errors.New("policy: scale: min_instances must be at least 1 and max_instances at least min_instances"))
	}
	if !(c.TargetUtilization > 0 && c.TargetUtilization <= 1) {
		errs = append(errs, errors.New("policy: scale: target_utilization must be above 0 and at most 1"))
	}
	if c.UpAfter < 1 || c.DownAfter < 1 {
		errs = append(errs, errors.New("policy: scale: up_after and down_after must be at least 1"))
	}
	if c.DownHold < 0 {
		errs = append(errs, errors.New("policy: scale: down_hold must not be negative"))
	}
	return errors.Join(errs...)
}

// ScaleInput is one evaluation's view of the fleet.
type ScaleInput struct {
	// Instances is the worker instances running now.
	Instances int
	// SlotsPerInstance is the slots of one instance.
	SlotsPerInstance int
	// Demand is the demand per model.
	Demand map[string]Demand
}

// Scaler recommends how many worker instances to run: enough that busy
// calls plus queued requests fill TargetUtilization of their slots, within
// [MinInstances, MaxInstances]. It rises after UpAfter evaluations to the
// least figure they wanted, and falls after DownAfter evaluations, outside
// DownHold, to the most figure they wanted. It is not safe for concurrent
// use.
type Scaler struct {
	cfg ScaleConfig
	// rec is the recommendation; 0 before the first evaluation.
	rec int
	// changed is when rec last changed.
	changed time.Time
	// up and down count consecutive evaluations wanting more and fewer;
	// upMin and downMax are the least and most they wanted.
	up, down       int
	upMin, downMax int
}

// NewScaler returns a scaler with no history. cfg must be valid.
func NewScaler(cfg ScaleConfig) *Scaler { return &Scaler{cfg: cfg} }

// Evaluate decides the recommended number of instances at now. The first
// evaluation starts from in.Instances, within the bounds.
func (s *Scaler) Evaluate(now time.Time, in ScaleInput) Decision[int] {
	prev, first := s.rec, s.rec == 0
	if first {
		prev = in.Instances
		s.rec = clamp(in.Instances, s.cfg.MinInstances, s.cfg.MaxInstances)
		s.changed = now
	}
	busy, queued := 0, 0
	var throughput float64
	for _, d := range in.Demand {
		busy += max(d.BusySlots, 0)
		queued += max(d.QueueDepth, 0)
		throughput += d.Throughput
	}
	perInstance := float64(max(in.SlotsPerInstance, 1)) * s.cfg.TargetUtilization
	desired := clamp(int(math.Ceil(float64(busy+queued)/perInstance)), s.cfg.MinInstances, s.cfg.MaxInstances)

	reason, moved := "", false
	switch {
	case desired > s.rec:
		if s.up == 0 || desired < s.upMin {
			s.upMin = desired
		}
		s.up, s.down = s.up+1, 0
		if s.up >= s.cfg.UpAfter {
			reason = fmt.Sprintf("raised from %d to %d: %d busy and %d queued need %d instances of %d slots at %.0f%% for %d evaluations",
				s.rec, s.upMin, busy, queued, desired, in.SlotsPerInstance, 100*s.cfg.TargetUtilization, s.up)
			s.rec, s.changed, s.up, moved = s.upMin, now, 0, true
		} else {
			reason = fmt.Sprintf("no change: %d wanted for %d of %d evaluations", desired, s.up, s.cfg.UpAfter)
		}
	case desired < s.rec:
		if s.down == 0 || desired > s.downMax {
			s.downMax = desired
		}
		s.up, s.down = 0, s.down+1
		switch {
		case s.down < s.cfg.DownAfter:
			reason = fmt.Sprintf("no change: %d enough for %d of %d evaluations", desired, s.down, s.cfg.DownAfter)
		case now.Sub(s.changed) < s.cfg.DownHold:
			reason = fmt.Sprintf("no change: %d enough, but the last change was %s ago (hold %s)", desired, now.Sub(s.changed), s.cfg.DownHold)
		default:
			reason = fmt.Sprintf("lowered from %d to %d: %d busy and %d queued need %d instances for %d evaluations",
				s.rec, s.downMax, busy, queued, s.downMax, s.down)
			s.rec, s.changed, s.down, moved = s.downMax, now, 0, true
		}
	default:
		s.up, s.down = 0, 0
		reason = fmt.Sprintf("no change: %d busy and %d queued fit %d instances", busy, queued, s.rec)
	}
	if first && !moved && s.rec != prev {
		reason = fmt.Sprintf("set to %d: %d running is outside [%d, %d]", s.rec, prev, s.cfg.MinInstances, s.cfg.MaxInstances)
	}
	return Decision[int]{
		Kind:    KindInstances,
		Value:   s.rec,
		Changed: s.rec != prev,
		Reason:  reason,
		Numbers: map[string]float64{
			"instances":             float64(in.Instances),
			"slots_per_instance":    float64(in.SlotsPerInstance),
			"busy_slots":            float64(busy),
			"queue_depth":           float64(queued),
			"throughput_per_second": throughput,
			"desired":               float64(desired),
			"target_utilization":    s.cfg.TargetUtilization,
			"utilization":           float64(busy+queued) / float64(max(in.Instances*max(in.SlotsPerInstance, 1), 1)),
		},
	}
}
