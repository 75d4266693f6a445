package sched

import (
	"fmt"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

// Config is the priority policy.
type Config struct {
	// NormalAgeAfter is how long normal may go unserved while high has work
	// before normal is tried first once. Default 1s.
	NormalAgeAfter time.Duration `koanf:"normal_age_after"`
	// LowAgeAfter is the same for low. Default 3s.
	LowAgeAfter time.Duration `koanf:"low_age_after"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{NormalAgeAfter: time.Second, LowAgeAfter: 3 * time.Second} }

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.NormalAgeAfter <= 0 || c.LowAgeAfter <= 0 {
		return fmt.Errorf("sched: normal_age_after and low_age_after must be positive")
	}
	return nil
}

// Policy orders the priorities. It is not safe for concurrent use.
type Policy struct {
	cfg Config
	// last is when each priority was last served or found empty.
	last [3]time.Time
}

// New returns a policy whose clocks start at now.
func New(cfg Config, now time.Time) *Policy {
	return &Policy{cfg: cfg, last: [3]time.Time{now, now, now}}
}

// Order returns the priorities in the order to try them at now: high,
// normal, low, except that a lower priority that has waited longer than
// its age limit since it was last served goes first (the oldest first).
func (p *Policy) Order(now time.Time) []wire.Priority {
	lowAged := now.Sub(p.last[2]) >= p.cfg.LowAgeAfter
	normalAged := now.Sub(p.last[1]) >= p.cfg.NormalAgeAfter
	switch {
	case lowAged && normalAged && p.last[2].Before(p.last[1]):
		return []wire.Priority{wire.Low, wire.Normal, wire.High}
	case lowAged && normalAged:
		return []wire.Priority{wire.Normal, wire.Low, wire.High}
	case lowAged:
		return []wire.Priority{wire.Low, wire.High, wire.Normal}
	case normalAged:
		return []wire.Priority{wire.Normal, wire.High, wire.Low}
	}
	return []wire.Priority{wire.High, wire.Normal, wire.Low}
}

// Served records that pr was served, or had nothing waiting, at now.
func (p *Policy) Served(pr wire.Priority, now time.Time) {
	if i := pr.Index(); i >= 0 {
		p.last[i] = now
	}
}

// Slots is how many of a worker's slots each priority may hold.
type Slots struct {
	Total int
	// ReservedHigh slots are kept for high priority: normal and low
	// together never hold more than Total-ReservedHigh.
	ReservedHigh int
}

// Free returns how many more calls of priority pr may start when busy
// calls run in total and busyShared of them are normal or low.
func (s Slots) Free(pr wire.Priority, busy, busyShared int) int {
	free := s.Total - busy
	if pr != wire.High {
		free = min(free, s.Total-s.ReservedHigh-busyShared)
	}
	return max(free, 0)
}
