package optimizer

import (
	"fmt"
	"time"

	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/window"
)

// Config is the optimizer's configuration.
type Config struct {
	// Breaker tunes every model's circuit breaker (see breaker.Config for
	// each field's default).
	Breaker breaker.Config `koanf:"breaker"`
	// Fallbacks name, per model, the model its requests go to while its
	// breaker is open. A list, not a map, because model names hold '.'.
	// Default none: requests for a model with an open breaker fail fast.
	Fallbacks []Fallback `koanf:"fallbacks"`
	// Window sizes the sliding windows of request statistics (see
	// window.Config for each field's default).
	Window window.Config `koanf:"window"`
	// Tick is how often breakers are advanced (open -> half-open after the
	// cool-down) and windows aged. Default 1s.
	Tick time.Duration `koanf:"tick"`
	// Context chooses each model's num_ctx from the prompt sizes of its
	// answers (see internal/policy).
	Context policy.ContextConfig `koanf:"context"`
	// Budget moves the fleet's slots (and with them num_thread) between
	// models by demand (see policy.BudgetConfig for each field's default).
	Budget policy.BudgetConfig `koanf:"budget"`
	// Scale recommends worker instances for an external autoscaler (see
	// policy.ScaleConfig).
	Scale policy.ScaleConfig `koanf:"scale"`
	// Warmth sets each model's keep_alive from its inter-arrival times and
	// unloads idle models when a host's memory is tight (see
	// policy.WarmthConfig).
	Warmth policy.WarmthConfig `koanf:"warmth"`
	// Preload loads a model shortly before its next expected burst of
	// requests when they come at a steady period (a periodic job) and the
	// host's memory allows (see policy.RhythmConfig for each field and its
	// default, policy.DefaultRhythmConfig; a Lead of 0 turns it off). The
	// zero value also means the defaults.
	Preload policy.RhythmConfig `koanf:"preload"`
	// WorkerTimeout is how long a worker may go without a heartbeat event
	// before its slots leave the budget. Default 30s.
	WorkerTimeout time.Duration `koanf:"worker_timeout"`
	// SLO is the service-level targets per priority (and agent profile):
	// the optimizer writes them to herd_control (slo.ControlKey) for the
	// live page and `herd health`; `herd alerts` renders the alert rules
	// from them (see slo.Config for each field's default).
	SLO slo.Config `koanf:"slo"`
	// PriorityModels are kept loaded (warmth.priority_keep_alive) and
	// never unloaded (from the models section's priority).
	PriorityModels []string `koanf:"-"`
}

// Fallback is one model's fallback.
type Fallback struct {
	// Model is the model whose breaker may open. Required.
	Model string `koanf:"model"`
	// Fallback receives Model's requests while Model's breaker is open.
	// Required, not Model itself.
	Fallback string `koanf:"fallback"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Breaker: breaker.DefaultConfig(), Window: window.DefaultConfig(), Tick: time.Second, Context: policy.DefaultContextConfig(),
		Budget: policy.DefaultBudgetConfig(), Scale: policy.DefaultScaleConfig(), Warmth: policy.DefaultWarmthConfig(),
		Preload: policy.DefaultRhythmConfig(), WorkerTimeout: 30 * time.Second, SLO: slo.Default()}
}

// Validate returns an error wrapping ErrInvalidConfig for a setting that
// cannot work.
func (c Config) Validate() error {
	if err := c.Breaker.Validate(); err != nil {
		return fmt.Errorf("%w: breaker: %w", ErrInvalidConfig, err)
	}
	if err := c.fallbacks().Validate(); err != nil {
		return fmt.Errorf("%w: fallbacks: %w", ErrInvalidConfig, err)
	}
	seen := map[string]bool{}
	for _, f := range c.Fallbacks {
		if seen[f.Model] {
			return fmt.Errorf("%w: fallbacks: model %q is listed twice", ErrInvalidConfig, f.Model)
		}
		seen[f.Model] = true
	}
	if err := c.Context.Validate(); err != nil {
		return fmt.Errorf("%w: context: %w", ErrInvalidConfig, err)
	}
	if err := c.Window.Validate(); err != nil {
		return fmt.Errorf("%w: window: %w", ErrInvalidConfig, err)
	}
	if err := c.Budget.Validate(); err != nil {
		return fmt.Errorf("%w: budget: %w", ErrInvalidConfig, err)
	}
	if err := c.Scale.Validate(); err != nil {
		return fmt.Errorf("%w: scale: %w", ErrInvalidConfig, err)
	}
	if err := c.Warmth.Validate(); err != nil {
		return fmt.Errorf("%w: warmth: %w", ErrInvalidConfig, err)
	}
	if p := c.Preload; p != (policy.RhythmConfig{}) && (p.IdleGap <= 0 || p.MinBursts < 2 || p.Tolerance < 0 || p.Tolerance >= 1 || p.Lead < 0) {
		return fmt.Errorf("%w: preload: idle_gap %v must be positive, min_bursts %d at least 2, tolerance %v in [0, 1), lead %v not negative",
			ErrInvalidConfig, p.IdleGap, p.MinBursts, p.Tolerance, p.Lead)
	}
	if err := c.SLO.Validate(); err != nil {
		return fmt.Errorf("%w: slo: %w", ErrInvalidConfig, err)
	}
	if c.WorkerTimeout <= 0 {
		return fmt.Errorf("%w: worker_timeout must be positive, not %v", ErrInvalidConfig, c.WorkerTimeout)
	}
	if c.Tick < time.Millisecond {
		return fmt.Errorf("%w: tick must be at least 1ms, not %v", ErrInvalidConfig, c.Tick)
	}
	return nil
}

// preload returns Preload, the defaults when it is the zero value.
func (c Config) preload() policy.RhythmConfig {
	if c.Preload == (policy.RhythmConfig{}) {
		return policy.DefaultRhythmConfig()
	}
	return c.Preload
}

// fallbacks returns Fallbacks as the breaker package's map.
func (c Config) fallbacks() breaker.Fallback {
	if len(c.Fallbacks) == 0 {
		return nil
	}
	m := make(breaker.Fallback, len(c.Fallbacks))
	for _, f := range c.Fallbacks {
		m[f.Model] = f.Fallback
	}
	return m
}
