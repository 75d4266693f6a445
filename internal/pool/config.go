package pool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Auto is the Instances value that follows the optimizer's decision.
const Auto = "auto"

// Config is the pool of worker instances `herd up` runs on its host.
type Config struct {
	// Instances is how many worker instances run, each with its own
	// managed Ollama pinned to its own CoresPerInstance cores: a number,
	// or "auto" to follow the optimizer's instances decision within
	// MinInstances, MaxInstances and the cores. Default "1": one worker and
	// its Ollama as configured by worker and managed, without a pool.
	Instances string `koanf:"instances"`
	// CoresPerInstance is the cores each instance is pinned to; it is the
	// instance's worker.cpu_budget. Default 1.
	CoresPerInstance int `koanf:"cores_per_instance"`
	// MinInstances is the fewest instances "auto" runs. Default 1.
	MinInstances int `koanf:"min_instances"`
	// MaxInstances is the most instances "auto" runs; 0 means as many as
	// the cores hold. Default 0.
	MaxInstances int `koanf:"max_instances"`
	// CPUs are the cores shared out between instances, CoresPerInstance
	// each in order; empty means every core this process may run on.
	// Default empty.
	CPUs []int `koanf:"cpus"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Instances: "1", CoresPerInstance: 1, MinInstances: 1}
}

// Enabled reports whether herd up runs a pool: Instances is "auto" or a
// number other than 1.
func (c Config) Enabled() bool {
	s := strings.TrimSpace(c.Instances)
	return s != "" && s != "1"
}

// Auto reports whether the pool follows the optimizer's decision.
func (c Config) Auto() bool { return strings.EqualFold(strings.TrimSpace(c.Instances), Auto) }

// Fixed returns the fixed instance count; 0 for "auto".
func (c Config) Fixed() int {
	n, _ := strconv.Atoi(strings.TrimSpace(c.Instances))
	return n
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if !c.Auto() {
		if n, err := strconv.Atoi(strings.TrimSpace(c.Instances)); err != nil || n < 1 {
			return fmt.Errorf("%w: instances %q must be auto or a number of at least 1", ErrInvalidConfig, c.Instances)
		}
	}
	switch {
	case c.CoresPerInstance < 1:
		return fmt.Errorf("%w: cores_per_instance must be at least 1", ErrInvalidConfig)
	case c.MinInstances < 1:
		return fmt.Errorf("%w: min_instances must be at least 1", ErrInvalidConfig)
	case c.MaxInstances < 0 || (c.MaxInstances > 0 && c.MaxInstances < c.MinInstances):
		return fmt.Errorf("%w: max_instances must be 0 (the cores) or at least min_instances", ErrInvalidConfig)
	}
	for i, cpu := range c.CPUs {
		if cpu < 0 {
			return fmt.Errorf("%w: cpus: %d is not a cpu number", ErrInvalidConfig, cpu)
		}
		if slices.Contains(c.CPUs[:i], cpu) {
			return fmt.Errorf("%w: cpus: %d is listed twice", ErrInvalidConfig, cpu)
		}
	}
	return nil
}
