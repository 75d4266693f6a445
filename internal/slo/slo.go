package slo

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

// ControlKey is the herd_control key the optimizer writes the targets in
// force to, as JSON (Config).
const ControlKey = "slo"

// ErrInvalidConfig is returned by Validate for a target that cannot work.
var ErrInvalidConfig = errors.New("slo: invalid config")

// Target is one service level: requests finish within P95 and P99 at those
// percentiles, and at most ErrorRate of them fail.
type Target struct {
	// P95 is the end-to-end latency 95% of requests finish within.
	P95 time.Duration `koanf:"p95" json:"p95_ns"`
	// P99 is the end-to-end latency 99% of requests finish within.
	P99 time.Duration `koanf:"p99" json:"p99_ns"`
	// ErrorRate is the most share of requests (0 to 1) that may fail.
	ErrorRate float64 `koanf:"error_rate" json:"error_rate"`
}

// Profile is the target of the agents whose names match one of Agents.
type Profile struct {
	// Name names the profile in reports. Required.
	Name string `koanf:"name" json:"name"`
	// Agents are glob patterns (path.Match) matched against the agent's
	// name. Required.
	Agents []string `koanf:"agents" json:"agents"`
	// Target is the profile's service level; a zero field takes the
	// priority's.
	Target `koanf:",squash" json:"target"`
}

// Config is the service-level targets.
type Config struct {
	// High, Normal and Low are the targets of each priority. Default (the
	// seed's) p95 2s, p99 5s, error rate 0.1% for each.
	High   Target `koanf:"high" json:"high"`
	Normal Target `koanf:"normal" json:"normal"`
	Low    Target `koanf:"low" json:"low"`
	// Profiles are targets for agents, first match wins; for reports that
	// know the agent (replay). Metrics carry no agent label, so the alert
	// rules and the live page judge by priority. Default none.
	Profiles []Profile `koanf:"profiles" json:"profiles,omitempty"`
	// Window is the span the alert rules' rates and percentiles cover, and
	// `herd health` reads. Default 5m.
	Window time.Duration `koanf:"window" json:"window_ns"`
	// Firing is how long a target must be missed before its alert fires
	// (the rules' for).
	// Default 5m.
	Firing time.Duration `koanf:"for" json:"for_ns"`
}

// Seed is the seed's target: p95 2s, p99 5s, errors under 0.1%.
var Seed = Target{P95: 2 * time.Second, P99: 5 * time.Second, ErrorRate: 0.001}

// Default returns the defaults: Seed for each priority.
func Default() Config {
	return Config{High: Seed, Normal: Seed, Low: Seed, Window: 5 * time.Minute, Firing: 5 * time.Minute}
}

// Validate returns an error wrapping ErrInvalidConfig for a target that
// cannot work.
func (c Config) Validate() error {
	var errs []error
	for _, p := range wire.Priorities {
		if err := c.For(p).validate(false); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, p, err))
		}
	}
	for i, p := range c.Profiles {
		if p.Name == "" || len(p.Agents) == 0 {
			errs = append(errs, fmt.Errorf("%w: profiles[%d]: name and agents are required", ErrInvalidConfig, i))
		}
		for _, a := range p.Agents {
			if _, err := path.Match(a, ""); err != nil {
				errs = append(errs, fmt.Errorf("%w: profiles[%d]: agent pattern %q: %w", ErrInvalidConfig, i, a, err))
			}
		}
		if err := p.validate(true); err != nil {
			errs = append(errs, fmt.Errorf("%w: profiles[%d]: %w", ErrInvalidConfig, i, err))
		}
	}
	if c.Window < time.Minute {
		errs = append(errs, fmt.Errorf("%w: window must be at least 1m, not %v", ErrInvalidConfig, c.Window))
	}
	if c.Firing < 0 {
		errs = append(errs, fmt.Errorf("%w: for must not be negative", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

func (t Target) validate(partial bool) error {
	switch {
	case t.P95 < 0 || t.P99 < 0 || (!partial && (t.P95 == 0 || t.P99 == 0)):
		return errors.New("p95 and p99 must be positive")
	case t.P95 > 0 && t.P99 > 0 && t.P99 < t.P95:
		return errors.New("p99 must be at least p95")
	case t.ErrorRate < 0 || t.ErrorRate > 1:
		return errors.New("error_rate must be 0 to 1")
	}
	return nil
}

// For returns priority p's target (normal's for an unknown priority).
func (c Config) For(p wire.Priority) Target {
	switch p {
	case wire.High:
		return c.High
	case wire.Low:
		return c.Low
	}
	return c.Normal
}

// ForAgent returns the target of agent's requests at priority p: the
// first matching profile's, its zero fields from the priority's, and the
// profile's name ("" for none).
func (c Config) ForAgent(p wire.Priority, agent string) (Target, string) {
	t := c.For(p)
	for _, pr := range c.Profiles {
		for _, a := range pr.Agents {
			if ok, _ := path.Match(a, agent); ok {
				if pr.P95 > 0 {
					t.P95 = pr.P95
				}
				if pr.P99 > 0 {
					t.P99 = pr.P99
				}
				if pr.ErrorRate > 0 {
					t.ErrorRate = pr.ErrorRate
				}
				return t, pr.Name
			}
		}
	}
	return t, ""
}

// Measured is what was observed of a set of requests.
type Measured struct {
	// Count is how many requests; no verdict on none.
	Count     int64
	P95, P99  time.Duration
	ErrorRate float64
}

// Misses returns what m misses of t, one sentence each ("p95 3.1s above
// 2s"); none when every target is met or nothing was measured.
func (t Target) Misses(m Measured) []string {
	if m.Count == 0 {
		return nil
	}
	var out []string
	if t.P95 > 0 && m.P95 > t.P95 {
		out = append(out, fmt.Sprintf("p95 %v above %v", m.P95.Round(time.Millisecond), t.P95))
	}
	if t.P99 > 0 && m.P99 > t.P99 {
		out = append(out, fmt.Sprintf("p99 %v above %v", m.P99.Round(time.Millisecond), t.P99))
	}
	if m.ErrorRate > t.ErrorRate {
		out = append(out, fmt.Sprintf("errors %s above %s", Percent(m.ErrorRate), Percent(t.ErrorRate)))
	}
	return out
}

// Percent formats a share as a percentage with the digits it needs.
func Percent(v float64) string {
	s := fmt.Sprintf("%.2f", 100*v)
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s + "%"
}

// IsError reports whether a request's final status counts against the
// error rate: 5xx, and 429 (queue_full).
func IsError(status int) bool { return status >= 500 || status == 429 }

// Marshal encodes c for herd_control.
func (c Config) Marshal() []byte { v, _ := json.Marshal(c); return v }
