package worker

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/sched"
)

// Config is a worker's configuration.
type Config struct {
	// ID names the worker in replies (Herd-Worker) and in herd_control.
	// Default <hostname>-<pid>.
	ID string `koanf:"id"`
	// Slots is how many Ollama calls run at once. Default 2.
	Slots int `koanf:"slots"`
	// ReservedHighSlots of the slots only high priority may use. Default 1
	// when Slots is 2 or more, else 0.
	ReservedHighSlots int `koanf:"reserved_high_slots"`
	// CPUBudget is the cores this worker may keep busy; it becomes Ollama's
	// num_thread. Default: the machine's cores.
	CPUBudget float64 `koanf:"cpu_budget"`
	// Models this worker serves; empty means every model its Ollama has.
	Models []string `koanf:"models"`
	// PollInterval is how often an idle worker looks for batches when no
	// wake-up arrives. Default 250ms.
	PollInterval time.Duration `koanf:"poll_interval"`
	// DrainTimeout is how long shutdown waits for running batches before
	// handing them back for redelivery. Default 30s.
	DrainTimeout time.Duration `koanf:"drain_timeout"`
	// Attempts is how many times a call that failed with a retryable error
	// is tried in place before the batch is handed back with a delay.
	// Default 3.
	Attempts int `koanf:"attempts"`
	// RetryBackoff is the first wait between attempts; it doubles.
	// Default 250ms.
	RetryBackoff time.Duration `koanf:"retry_backoff"`
	// Heartbeat is how often the worker refreshes its registration and
	// model list. Default 5s.
	Heartbeat time.Duration `koanf:"heartbeat"`
	// Sched is the priority policy.
	Sched sched.Config `koanf:"sched"`
	// NumCtx is the num_ctx given to each model when a request sets none
	// (from the models section of the configuration).
	NumCtx map[string]int `koanf:"-"`
	// KeepAlive is each model's keep_alive when a request sets none (from
	// the models section).
	KeepAlive map[string]time.Duration `koanf:"-"`
	// NumThread caps num_thread per model below CPUBudget (from the models
	// section).
	NumThread map[string]int `koanf:"-"`
	// Runner is herd's policy for what agents may not set (from the
	// dispatcher section and models[].max_predict): every call runs with
	// herd's runner options and keep_alive, and num_predict at most its
	// model's cap.
	Runner request.Runner `koanf:"-"`
	// Warm lists the priority models, loaded at start with their num_ctx
	// and kept loaded (from the models section).
	Warm []string `koanf:"-"`
	// Memory returns the memory in use and in all of the worker's host,
	// reported to the optimizer for its unload decisions; a test seam.
	// nil (the default) means ReadMemInfo (/proc/meminfo).
	Memory func() (used, total int64, err error) `koanf:"-"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		ID:                fmt.Sprintf("%s-%d", host, os.Getpid()),
		Slots:             2,
		ReservedHighSlots: -1,
		CPUBudget:         float64(runtime.NumCPU()),
		PollInterval:      250 * time.Millisecond,
		DrainTimeout:      30 * time.Second,
		Attempts:          3,
		RetryBackoff:      250 * time.Millisecond,
		Heartbeat:         5 * time.Second,
		Sched:             sched.DefaultConfig(),
	}
}

// reserved returns the effective number of slots kept for high priority.
func (c Config) reserved() int {
	if c.ReservedHighSlots >= 0 {
		return c.ReservedHighSlots
	}
	if c.Slots >= 2 {
		return 1
	}
	return 0
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("worker: id is required")
	case c.Slots < 1:
		return errors.New("worker: slots must be at least 1")
	case c.reserved() >= c.Slots:
		return errors.New("worker: reserved_high_slots must be less than slots, or normal and low never run")
	case c.CPUBudget <= 0:
		return errors.New("worker: cpu_budget must be positive")
	case c.PollInterval <= 0 || c.Heartbeat <= 0:
		return errors.New("worker: poll_interval and heartbeat must be positive")
	case c.Attempts < 1:
		return errors.New("worker: attempts must be at least 1")
	}
	return c.Sched.Validate()
}
