package policy

import "errors"

// Config is every optimizer decision's configuration.
type Config struct {
	// Budget moves slots between models.
	Budget BudgetConfig `koanf:"budget"`
	// Scale recommends worker instances.
	Scale ScaleConfig `koanf:"scale"`
	// Context chooses num_ctx per model.
	Context ContextConfig `koanf:"context"`
	// Warmth sets keep_alive, preloads and unloads models.
	Warmth WarmthConfig `koanf:"warmth"`
	// Auto chooses the model of "model": "auto" requests.
	Auto AutoConfig `koanf:"auto"`
}

// DefaultConfig returns the defaults of every decision.
func DefaultConfig() Config {
	return Config{
		Budget:  DefaultBudgetConfig(),
		Scale:   DefaultScaleConfig(),
		Context: DefaultContextConfig(),
		Warmth:  DefaultWarmthConfig(),
		Auto:    DefaultAutoConfig(),
	}
}

// Validate reports every setting that cannot work, joined.
func (c Config) Validate() error {
	return errors.Join(c.Budget.Validate(), c.Scale.Validate(), c.Context.Validate(), c.Warmth.Validate(), c.Auto.Validate())
}
