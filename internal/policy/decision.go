package policy

import (
	"cmp"
	"math"
	"slices"
)

// Kind names the setting a Decision is about.
type Kind string

// The kinds of decisions.
const (
	// KindBudget is the slot allocation per model: Decision[Allocation].
	KindBudget Kind = "budget"
	// KindInstances is the recommended number of worker instances:
	// Decision[int].
	KindInstances Kind = "instances"
	// KindNumCtx is one model's context window in tokens: Decision[int].
	KindNumCtx Kind = "num_ctx"
	// KindKeepAlive is one model's keep_alive: Decision[time.Duration].
	KindKeepAlive Kind = "keep_alive"
	// KindPreload is the models to load now: Decision[[]string].
	KindPreload Kind = "preload"
	// KindUnload is the models to unload now: Decision[[]string].
	KindUnload Kind = "unload"
	// KindAutoModel is the model chosen for a "model": "auto" request:
	// Decision[Selection], always Changed.
	KindAutoModel Kind = "auto_model"
)

// Decision is one policy decision: the setting to apply, whether it differs
// from the current one, why, and the numbers behind it. Decisions are plain
// values, safe to marshal to JSON and to share.
type Decision[T any] struct {
	// Kind is the setting decided.
	Kind Kind `json:"kind"`
	// Model is the model the decision is about; empty for fleet-wide ones.
	Model string `json:"model,omitempty"`
	// Value is the new setting (the current one when Changed is false).
	Value T `json:"value"`
	// Changed reports whether Value differs from the current setting, that
	// is, whether there is anything to apply and announce.
	Changed bool `json:"changed"`
	// Reason is a short sentence for people: what was seen and what follows.
	Reason string `json:"reason"`
	// Numbers are the measurements and thresholds behind the decision, by
	// name with units in the name (queue_age_seconds). Per-model numbers of
	// fleet-wide decisions are named "<name>/<model>".
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Number is the constraint of Percentile: integers (token counts,
// durations) and floats.
type Number interface {
	~int | ~int32 | ~int64 | ~float64
}

// Percentile returns the q-quantile (0 < q <= 1) of values by the
// nearest-rank method: the smallest value that at least q of the values
// do not exceed. It returns 0 for no values and does not modify values.
func Percentile[T Number](values []T, q float64) T {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// clamp returns v within [lo, hi]; hi <= 0 means no upper bound.
func clamp[T cmp.Ordered](v, lo, hi T) T {
	var zero T
	if hi > zero && v > hi {
		v = hi
	}
	return max(v, lo)
}
