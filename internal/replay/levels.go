package replay

import (
	"fmt"
	"strings"
	"time"

	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/wire"
)

// Level is one priority's run against its service-level target.
type Level struct {
	Priority string `json:"priority"`
	// TargetP95Ms, TargetP99Ms and TargetErrorRate are the targets.
	TargetP95Ms     float64 `json:"target_p95_ms"`
	TargetP99Ms     float64 `json:"target_p99_ms"`
	TargetErrorRate float64 `json:"target_error_rate"`
	// ErrorRate is the share of the priority's sent requests that ended
	// in an error reply or were lost.
	ErrorRate float64 `json:"error_rate"`
	// Met is false when a target is missed; Misses says which.
	Met    bool     `json:"met"`
	Misses []string `json:"misses,omitempty"`
}

// Judge sets r.Levels: each priority's latency and errors against
// targets, the ones every other judge of service reads (alert rules, the
// live page, herd health).
func (r *Report) Judge(targets slo.Config) {
	r.Levels = nil
	for _, p := range r.Priorities() {
		s := r.ByPriority[p]
		if s == nil {
			continue
		}
		t := targets.For(wire.Priority(p))
		l := Level{Priority: p, TargetP95Ms: durMs(t.P95), TargetP99Ms: durMs(t.P99), TargetErrorRate: t.ErrorRate}
		if s.Sent > 0 {
			l.ErrorRate = float64(s.Errors+s.Lost) / float64(s.Sent)
		}
		l.Misses = t.Misses(slo.Measured{Count: s.Sent, P95: msDur(s.P95Ms), P99: msDur(s.P99Ms), ErrorRate: l.ErrorRate})
		l.Met = len(l.Misses) == 0
		r.Levels = append(r.Levels, l)
	}
}

func msDur(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// writeLevels prints one line per priority: met, or what it missed.
func (r *Report) writeLevels(b *strings.Builder) {
	if len(r.Levels) == 0 {
		return
	}
	b.WriteString("service levels:")
	for _, l := range r.Levels {
		if l.Met {
			fmt.Fprintf(b, "  %s met (p95 %s, p99 %s, errors %s)", l.Priority, msDur(l.TargetP95Ms), msDur(l.TargetP99Ms), slo.Percent(l.TargetErrorRate))
		} else {
			fmt.Fprintf(b, "  %s MISSED: %s", l.Priority, strings.Join(l.Misses, ", "))
		}
	}
	b.WriteString("\n")
}
