package dispatcher

import (
	"errors"
	"fmt"
	"time"

	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/sched"
)

// Config is the dispatcher's configuration.
type Config struct {
	// BatchSize is the most requests in one batch. Default 16.
	BatchSize int `koanf:"batch_size"`
	// MaxWait is the longest a request waits for its batch to fill while
	// more input is arriving; with no input waiting, batches close at once.
	// Default 5ms.
	MaxWait time.Duration `koanf:"max_wait"`
	// Concurrency is how many requests are validated and looked up in the
	// cache at once. Default 16.
	Concurrency int `koanf:"concurrency"`
	// MaxBodyBytes is the largest request body accepted. Default 512 KiB.
	MaxBodyBytes int `koanf:"max_body_bytes"`
	// CacheTTL is how long an answer stays in herd_cache unless the request
	// says otherwise (Herd-Cache-TTL). Default 1h.
	CacheTTL time.Duration `koanf:"cache_ttl"`
	// CacheScope says who shares cached answers and coalesced calls:
	// "global" (every agent: an agent that gets Herd-Cache: hit or
	// coalesced learns that another agent sent the same request) or
	// "agent" (each agent only its own; no agent learns anything about
	// another's requests, and identical requests of two agents run
	// twice). An agent profile's cache_scope overrides it for its agents.
	// Default global.
	CacheScope string `koanf:"cache_scope"`
	// MaxCacheTTL bounds Herd-Cache-TTL. Default 24h.
	MaxCacheTTL time.Duration `koanf:"max_cache_ttl"`
	// WorkerStaleAfter is when a worker registration no longer counts for
	// model validation. Default 30s.
	WorkerStaleAfter time.Duration `koanf:"worker_stale_after"`
	// NoWorkerWait is how long a request waits for a live worker that
	// serves its model before it is answered 404 model_not_found (its
	// deadline, when sooner, answers it 504). From queue.no_worker_wait.
	// Default 30s.
	NoWorkerWait time.Duration `koanf:"-"`
	// MaxPerAgent is queue.max_per_agent, named in the ask door's 429.
	MaxPerAgent int `koanf:"-"`
	// MaxEmbedInputs is the most inputs one embed request may have;
	// more is refused 400 before it runs (its answer grows with them).
	// Default 256.
	MaxEmbedInputs int `koanf:"max_embed_inputs"`
	// Sched is the priority policy.
	Sched sched.Config `koanf:"sched"`
	// Auto chooses the model of "model": "auto" requests from the agent
	// profiles (see policy.AutoConfig for each field's default).
	Auto policy.AutoConfig `koanf:"auto"`
	// RunnerOptions says what happens to a request that sets an option of
	// Ollama's shared runner (request.RunnerOptions: num_ctx, num_thread,
	// num_gpu, num_batch, use_mlock, use_mmap, ...) or keep_alive: replace
	// (they are removed and the worker runs herd's) or refuse (answered 400
	// invalid_request). Default replace.
	RunnerOptions string `koanf:"runner_options"`
	// MaxPredict caps num_predict for the models without their own
	// models[].max_predict: a request without num_predict gets the cap, one
	// above it or unlimited (-1, -2, 0) is answered 400 invalid_request.
	// 0 means no cap. Default 2048.
	MaxPredict int `koanf:"max_predict"`
	// ModelMaxPredict is each model's own cap (from models[].max_predict).
	ModelMaxPredict map[string]int `koanf:"-"`
	// Capture says whether requests are recorded in HERD_CAPTURE at start
	// (from capture.enabled); herd_control's capture.enabled key switches
	// it at run time.
	Capture bool `koanf:"-"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		BatchSize:        16,
		MaxWait:          5 * time.Millisecond,
		Concurrency:      16,
		MaxBodyBytes:     512 << 10,
		CacheTTL:         time.Hour,
		MaxCacheTTL:      24 * time.Hour,
		CacheScope:       policy.CacheScopeGlobal,
		WorkerStaleAfter: 30 * time.Second,
		NoWorkerWait:     30 * time.Second,
		MaxEmbedInputs:   256,
		Sched:            sched.DefaultConfig(),
		Auto:             policy.DefaultAutoConfig(),
		RunnerOptions:    request.RunnerReplace,
		MaxPredict:       2048,
	}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1 || c.BatchSize > 256:
		return errors.New("dispatcher: batch_size must be 1 to 256")
	case c.MaxWait < 0:
		return errors.New("dispatcher: max_wait must not be negative")
	case c.Concurrency < 1:
		return errors.New("dispatcher: concurrency must be at least 1")
	case c.MaxEmbedInputs < 1:
		return errors.New("dispatcher: max_embed_inputs must be at least 1")
	case c.MaxBodyBytes < 1024:
		return errors.New("dispatcher: max_body_bytes must be at least 1024")
	case c.CacheTTL <= 0 || c.MaxCacheTTL < c.CacheTTL:
		return errors.New("dispatcher: cache_ttl must be positive and at most max_cache_ttl")
	case c.CacheScope != policy.CacheScopeGlobal && c.CacheScope != policy.CacheScopeAgent:
		return fmt.Errorf("dispatcher: cache_scope %q must be global or agent", c.CacheScope)
	case c.RunnerOptions != request.RunnerReplace && c.RunnerOptions != request.RunnerRefuse:
		return fmt.Errorf("dispatcher: runner_options %q must be replace or refuse", c.RunnerOptions)
	case c.MaxPredict < 0:
		return errors.New("dispatcher: max_predict must not be negative (0: no cap)")
	}
	if err := c.Auto.Validate(); err != nil {
		return err
	}
	return c.Sched.Validate()
}
