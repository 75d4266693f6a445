package managed

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/sutazai/herd/internal/testmodel"
)

// maxRestartBackoff caps the wait between restarts.
const maxRestartBackoff = 10 * time.Second

// maxCPU bounds CPU numbers in Config.CPUs (the size of Linux's cpu_set_t).
const maxCPU = 1024

// testModels are the generated models Config.TestModels may name.
var testModels = map[string]testmodel.Size{
	testmodel.Tiny.Name: testmodel.Tiny,
	testmodel.Slow.Name: testmodel.Slow,
}

// Config configures a managed `ollama serve`.
type Config struct {
	// Binary is the path of the ollama executable. Default "": $HERD_OLLAMA_BIN,
	// then bin/ollama in the working directory or the module root above it,
	// then ollama on $PATH (see FindBinary).
	Binary string `koanf:"binary"`
	// Dir is the state directory; the server's HOME (Dir/home), models
	// (Dir/models), generated test models (Dir/gen) and log (Dir/ollama.log)
	// live under it. Default "data/ollama".
	Dir string `koanf:"dir"`
	// Listen is the host:port the server listens on. Default "127.0.0.1:0":
	// a free loopback port, chosen once and kept across restarts.
	Listen string `koanf:"listen"`
	// CPUs pins the server and its model runners to these CPU numbers
	// (Linux CPU affinity). Default empty: no pinning.
	CPUs []int `koanf:"cpus"`
	// NumParallel is OLLAMA_NUM_PARALLEL, how many requests one loaded model
	// serves at once; set it to the worker's slots. Default 1.
	NumParallel int `koanf:"num_parallel"`
	// MaxQueue is OLLAMA_MAX_QUEUE, how many requests may wait for Ollama's
	// scheduler before it answers 503. Default 0: Ollama's own (512).
	MaxQueue int `koanf:"max_queue"`
	// KeepAlive is OLLAMA_KEEP_ALIVE, how long an idle model stays loaded;
	// negative keeps models loaded for ever. Default (and 0) 30m.
	KeepAlive time.Duration `koanf:"keep_alive"`
	// TestModels are the generated models (testmodel presets "herd-tiny",
	// "herd-slow") imported at start when the server lacks them. Default
	// ["herd-tiny"]; empty imports none.
	TestModels []string `koanf:"test_models"`
	// RestartBackoff is the first wait before restarting a server that
	// exited; it doubles after each failed restart up to 10s, and each wait
	// is drawn from its upper half (jitter). Default (and 0) 200ms.
	RestartBackoff time.Duration `koanf:"restart_backoff"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Dir:            "data/ollama",
		Listen:         "127.0.0.1:0",
		NumParallel:    1,
		KeepAlive:      30 * time.Minute,
		TestModels:     []string{testmodel.Tiny.Name},
		RestartBackoff: 200 * time.Millisecond,
	}
}

// withDefaults fills the zero values that have no meaning of their own.
// TestModels is left alone: empty means import nothing.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Dir == "" {
		c.Dir = d.Dir
	}
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.NumParallel == 0 {
		c.NumParallel = d.NumParallel
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = d.KeepAlive
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = d.RestartBackoff
	}
	return c
}

// Validate reports a setting that cannot work. Zero values that Start
// replaces with defaults are valid.
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("managed: listen %q: %w", c.Listen, err)
	}
	for i, cpu := range c.CPUs {
		if cpu < 0 || cpu >= maxCPU {
			return fmt.Errorf("managed: cpus: %d is not a cpu number", cpu)
		}
		if slices.Contains(c.CPUs[:i], cpu) {
			return fmt.Errorf("managed: cpus: %d is listed twice", cpu)
		}
	}
	switch {
	case c.NumParallel < 1:
		return errors.New("managed: num_parallel must be at least 1")
	case c.MaxQueue < 0:
		return errors.New("managed: max_queue must not be negative")
	case c.RestartBackoff < 0:
		return errors.New("managed: restart_backoff must not be negative")
	}
	for _, name := range c.TestModels {
		if _, ok := testModels[name]; !ok {
			return fmt.Errorf("managed: test_models: unknown model %q (known: %s, %s)",
				name, testmodel.Tiny.Name, testmodel.Slow.Name)
		}
	}
	return nil
}
