package optimizer

import (
	"fmt"
	"time"

	"github.com/sutazai/herd/internal/breaker"
	"github.com/sutazai/herd/internal/policy"
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
	return Config{Breaker: breaker.DefaultConfig(), Window: window.DefaultConfig(), Tick: time.Second, Context: policy.DefaultContextConfig()}
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
	if c.Tick < time.Millisecond {
		return fmt.Errorf("%w: tick must be at least 1ms, not %v", ErrInvalidConfig, c.Tick)
	}
	return nil
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
