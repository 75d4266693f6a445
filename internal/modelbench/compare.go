package modelbench

import (
	"fmt"
	"math"
	"time"
)

// Delta is the change of one figure since the previous run.
type Delta struct {
	// Name is the figure: p50, p95, p99, max, req/s, tok/s, load, errors
	// or quality.
	Name     string  `json:"name"`
	Previous float64 `json:"previous"`
	Current  float64 `json:"current"`
	// Change is the relative change (0.12 is +12%) or, when Points is set
	// (error rate, quality pass rate), the difference in percentage points.
	Change float64 `json:"change"`
	Points bool    `json:"points,omitempty"`
	// Worse says the change goes the bad way (slower, fewer tokens per
	// second, more errors, fewer passes).
	Worse bool `json:"worse,omitempty"`
}

// String formats the delta as "p95 +12%" or "errors +5.0pp".
func (d Delta) String() string {
	if d.Points {
		return fmt.Sprintf("%s %+.1fpp", d.Name, math.Round(d.Change*10)/10+0)
	}
	// Adding zero turns a rounded -0 into +0.
	return fmt.Sprintf("%s %+.0f%%", d.Name, math.Round(d.Change*100)+0)
}

// Comparison is a run set against the previous run of the same model and
// profile.
type Comparison struct {
	Model   string `json:"model"`
	Profile string `json:"profile"`
	// PreviousID and PreviousTime identify the previous run.
	PreviousID   string    `json:"previous_id"`
	PreviousTime time.Time `json:"previous_time"`
	// DigestChanged says the model itself changed between the runs.
	DigestChanged bool    `json:"digest_changed,omitempty"`
	Deltas        []Delta `json:"deltas"`
}

// Compare sets cur against prev. A relative change from zero has no
// meaning and is left out. It is pure.
func Compare(prev, cur *Result) Comparison {
	c := Comparison{
		Model: cur.Model, Profile: cur.Profile, PreviousID: prev.ID, PreviousTime: prev.Time,
		DigestChanged: prev.Digest != "" && cur.Digest != "" && prev.Digest != cur.Digest,
	}
	rel := func(name string, p, q float64, lowerIsBetter bool) {
		if p == 0 {
			return
		}
		ch := (q - p) / p
		c.Deltas = append(c.Deltas, Delta{Name: name, Previous: p, Current: q, Change: ch,
			Worse: (lowerIsBetter && ch > 0) || (!lowerIsBetter && ch < 0)})
	}
	pts := func(name string, p, q float64, lowerIsBetter bool) {
		ch := (q - p) * 100
		c.Deltas = append(c.Deltas, Delta{Name: name, Previous: p, Current: q, Change: ch, Points: true,
			Worse: (lowerIsBetter && ch > 0) || (!lowerIsBetter && ch < 0)})
	}
	rel("p50", prev.Latency.P50, cur.Latency.P50, true)
	rel("p95", prev.Latency.P95, cur.Latency.P95, true)
	rel("p99", prev.Latency.P99, cur.Latency.P99, true)
	rel("max", prev.Latency.Max, cur.Latency.Max, true)
	rel("req/s", prev.Throughput, cur.Throughput, false)
	rel("tok/s", prev.TokensPerSec, cur.TokensPerSec, false)
	rel("load", prev.LoadFirstMs, cur.LoadFirstMs, true)
	pts("errors", prev.ErrorRate, cur.ErrorRate, true)
	if prev.Quality != nil && cur.Quality != nil && prev.Quality.Cases > 0 && cur.Quality.Cases > 0 {
		pts("quality", prev.Quality.PassRate, cur.Quality.PassRate, false)
	}
	return c
}
