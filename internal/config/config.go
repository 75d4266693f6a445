package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/embedded"
	"github.com/sutazai/herd/internal/gateway"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/pool"
	"github.com/sutazai/herd/internal/worker"
)

// Config is all of herd's configuration. Its koanf paths (the tags) are the
// keys of config/herd.yaml and, upper-cased, of the HERD_* variables.
type Config struct {
	// Log is the logger's level and format.
	Log LogConfig `koanf:"log"`
	// NATS is how separate services and `herd ask` reach NATS.
	NATS NATSConfig `koanf:"nats"`
	// Server is the NATS server that `herd up` embeds.
	Server embedded.Config `koanf:"server"`
	// HTTP is the metrics and health endpoint of `herd up`.
	HTTP HTTPConfig `koanf:"http"`
	// API is the HTTP doors (Ollama's and the OpenAI API) of `herd up` and
	// cmd/gateway.
	API gateway.Config `koanf:"api"`
	// Queue bounds the request stream and sets its consumers' redelivery.
	Queue QueueConfig `koanf:"queue"`
	// Dispatcher is the dispatcher's batching, cache and priority settings.
	Dispatcher dispatcher.Config `koanf:"dispatcher"`
	// Worker is a worker's slots, CPU budget and retries. Its NumCtx is
	// filled from Models.
	Worker worker.Config `koanf:"worker"`
	// Ollama says where Ollama is.
	Ollama ollama.Config `koanf:"ollama"`
	// Managed is the Ollama `herd up` starts and supervises when no
	// Ollama URL is configured.
	Managed managed.Config `koanf:"managed"`
	// Pool is how many worker instances `herd up` runs, each with its own
	// managed Ollama on its own cores: fixed, or following the optimizer's
	// instances decision.
	Pool pool.Config `koanf:"pool"`
	// Capture records requests for replay.
	Capture CaptureConfig `koanf:"capture"`
	// Optimizer is the optimizer's breakers, fallbacks and windows.
	Optimizer optimizer.Config `koanf:"optimizer"`
	// Models are per-model settings. A list, not a map, because model names
	// contain '.' and ':', which are key delimiters. A list given in a file
	// or flag replaces the default list as a whole.
	Models []ModelConfig `koanf:"models"`
}

// LogConfig is the logger's configuration.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `koanf:"level"`
	// Format is json, console, or auto: console when stderr is a terminal,
	// else json. Default auto.
	Format string `koanf:"format"`
}

// NATSConfig says how to reach NATS when it is not embedded.
type NATSConfig struct {
	// URL of the NATS server; several may be given comma-separated.
	// Default nats://127.0.0.1:4222.
	URL string `koanf:"url"`
	// Replicas overrides the replica count of every stream and bucket; 0
	// keeps the value in the streams/ files. Use 3 on a cluster. Default 0.
	Replicas int `koanf:"replicas"`
	// Creds is the path of a NATS credentials file; empty means none.
	// Default empty.
	Creds string `koanf:"creds"`
	// User and Password log in as a user of the server's configuration
	// (deploy/nats/auth.conf: dispatcher, worker, optimizer, operator,
	// admin or an agent); set the password with HERD_NATS__PASSWORD rather
	// than in a file. Default empty: no user.
	User     string `koanf:"user"`
	Password string `koanf:"password"`
	// InboxPrefix replaces "_INBOX" for replies to this process; empty
	// means the one User's role may read: "_INBOX_<user>" for dispatcher,
	// worker, optimizer and operator, "_INBOX.<user>" for agents and admin,
	// "_INBOX" without a user. Default empty.
	InboxPrefix string `koanf:"inbox_prefix"`
	// TLS: ca is the authority that signed the server's certificate
	// (empty: the system's), cert and key an optional client certificate.
	// Default none.
	TLS auth.TLSConfig `koanf:"tls"`
}

// Client returns how to log in to NATS with these settings.
func (n NATSConfig) Client() auth.Client {
	return auth.Client{User: n.User, Password: n.Password, Creds: n.Creds, InboxPrefix: n.InboxPrefix, TLS: n.TLS}
}

// HTTPConfig is the metrics and health endpoint of `herd up`.
type HTTPConfig struct {
	// Listen is host:port for /metrics, /healthz and /readyz; empty serves
	// none. Default 127.0.0.1:8080.
	Listen string `koanf:"listen"`
}

// QueueConfig bounds the request stream and sets how its consumers redeliver.
type QueueConfig struct {
	// MaxRequests is the most requests HERD_REQ holds; beyond it new
	// requests are answered queue_full (429). Default 100000.
	MaxRequests int `koanf:"max_requests"`
	// AckWait is how long a consumer waits for an acknowledgement before
	// redelivering. Default 30s.
	AckWait time.Duration `koanf:"ack_wait"`
	// MaxDeliver is how many times a message is delivered before it goes to
	// the dead letters. Default 5.
	MaxDeliver int `koanf:"max_deliver"`
	// ResultsTTL is how long an answer stays in herd_results for a retry or
	// reconnect to find. Default 15m.
	ResultsTTL time.Duration `koanf:"results_ttl"`
	// MaxPerAgent is the most requests one agent may have waiting in
	// HERD_REQ per priority (and door); beyond it that agent's new
	// requests are answered 429 queue_full at once, so one agent cannot
	// fill the queue for everyone. Default 10000.
	MaxPerAgent int `koanf:"max_per_agent"`
	// NoWorkerWait is how long a request waits for a live worker that
	// serves its model (none registered: start-up, every worker
	// restarting) before it is answered 404 model_not_found; its
	// deadline, when sooner, answers it 504. Default 30s.
	NoWorkerWait time.Duration `koanf:"no_worker_wait"`
}

// CaptureConfig says whether and how much traffic is recorded in
// HERD_CAPTURE for replay.
type CaptureConfig struct {
	// Enabled records every request from start; `herd capture on|off`
	// switches it at run time. Default false.
	Enabled bool `koanf:"enabled"`
	// MaxAge drops records older than this. Default 24h.
	MaxAge time.Duration `koanf:"max_age"`
	// MaxBytes bounds the stream; the oldest records go first. Default 1 GiB.
	MaxBytes int64 `koanf:"max_bytes"`
}

// ModelConfig is one model's settings.
type ModelConfig struct {
	// Name is the model as Ollama names it, e.g. llama3.2:3b. Required.
	Name string `koanf:"name"`
	// NumCtx is the context window given when a request sets none, 256 to
	// 1048576 tokens. Required.
	NumCtx int `koanf:"num_ctx"`
	// KeepAlive is how long Ollama keeps the model loaded after its last
	// call; 0 unloads it at once, a negative value keeps it loaded (as in
	// Ollama). Default 30m.
	KeepAlive time.Duration `koanf:"keep_alive"`
	// Priority models are loaded at start and kept warm. Default false.
	Priority bool `koanf:"priority"`
	// NumThread caps Ollama's num_thread for this model below the worker's
	// cpu_budget: tiny models run faster on fewer threads. 0 means the
	// budget. Default 0.
	NumThread int `koanf:"num_thread"`
	// MaxPredict caps num_predict for this model: a request without one
	// gets the cap; one above it, or unlimited, is answered 400. 0 means
	// dispatcher.max_predict. Default 0.
	MaxPredict int `koanf:"max_predict"`
}

// Limits of ModelConfig.NumCtx and the default of ModelConfig.KeepAlive.
const (
	MinNumCtx        = 256
	MaxNumCtx        = 1 << 20
	DefaultKeepAlive = 30 * time.Minute
)

// maxPredict is the largest num_predict cap: the largest num_predict a
// request may give (internal/request).
const maxPredict = 1 << 20

// DefaultPath is the file Load reads when it is given no path and the file
// exists, relative to the working directory.
const DefaultPath = "config/herd.yaml"

// Default returns the defaults: the values config/herd.yaml lists.
func Default() Config {
	c := Config{
		Log:    LogConfig{Level: "info", Format: "auto"},
		NATS:   NATSConfig{URL: "nats://127.0.0.1:4222"},
		Server: embedded.DefaultConfig(),
		HTTP:   HTTPConfig{Listen: "127.0.0.1:8080"},
		API:    gateway.DefaultConfig(),
		Queue: QueueConfig{
			MaxRequests:  100000,
			AckWait:      30 * time.Second,
			MaxDeliver:   5,
			ResultsTTL:   15 * time.Minute,
			NoWorkerWait: 30 * time.Second,
			MaxPerAgent:  10000,
		},
		Dispatcher: dispatcher.DefaultConfig(),
		Worker:     worker.DefaultConfig(),
		Ollama:     ollama.DefaultConfig(),
		Managed:    defaultManaged(),
		Pool:       pool.DefaultConfig(),
		Capture:    CaptureConfig{MaxAge: 24 * time.Hour, MaxBytes: 1 << 30},
		Optimizer:  optimizer.DefaultConfig(),
		Models: []ModelConfig{
			{Name: "tinyllama", NumCtx: 2048, KeepAlive: DefaultKeepAlive},
			{Name: "llama3.2:3b", NumCtx: 4096, KeepAlive: DefaultKeepAlive},
			{Name: "deepseek-r1:8b", NumCtx: 8192, KeepAlive: DefaultKeepAlive},
			{Name: "herd-tiny", NumCtx: 2048, KeepAlive: DefaultKeepAlive, Priority: true, NumThread: 1},
		},
	}
	c.Worker.NumCtx = numCtx(c.Models)
	c.Worker.KeepAlive, c.Worker.Warm = warmth(c.Models)
	c.Optimizer.PriorityModels = slices.Clone(c.Worker.Warm)
	c.Worker.NumThread = numThread(c.Models)
	c.Dispatcher.MaxPerAgent = c.Queue.MaxPerAgent
	c.runner()
	return c
}

// runner fills the runner policy, which the dispatcher and the worker
// share, from dispatcher.runner_options, dispatcher.max_predict and
// models[].max_predict.
func (c *Config) runner() {
	c.Dispatcher.ModelMaxPredict = nil
	for _, mc := range c.Models {
		if mc.MaxPredict > 0 {
			if c.Dispatcher.ModelMaxPredict == nil {
				c.Dispatcher.ModelMaxPredict = map[string]int{}
			}
			c.Dispatcher.ModelMaxPredict[mc.Name] = mc.MaxPredict
		}
	}
	c.Worker.Runner = c.Dispatcher.Runner()
}

// numThread maps models to their num_thread cap; nil when none has one.
func numThread(models []ModelConfig) map[string]int {
	var m map[string]int
	for _, mc := range models {
		if mc.NumThread > 0 {
			if m == nil {
				m = map[string]int{}
			}
			m[mc.Name] = mc.NumThread
		}
	}
	return m
}

// ManagedFor returns the managed Ollama's configuration with the settings
// that follow from other sections filled in: dir <server.data>/ollama,
// num_parallel the worker's slots, and cpus the first cpu_budget cores when
// the budget is less than the machine's.
func (c Config) ManagedFor() managed.Config {
	m := c.Managed
	if m.Dir == "" {
		m.Dir = filepath.Join(c.Server.DataDir, "ollama")
	}
	if m.NumParallel == 0 {
		m.NumParallel = max(c.Worker.Slots, 1)
	}
	if len(m.CPUs) == 0 {
		if n := int(math.Ceil(c.Worker.CPUBudget)); n > 0 && n < runtime.NumCPU() {
			for i := range n {
				m.CPUs = append(m.CPUs, i)
			}
		}
	}
	return m
}

// defaultManaged is the managed Ollama's defaults with the settings that
// follow from other sections left empty: dir is <server.data>/ollama,
// num_parallel the worker's slots, cpus the first cpu_budget cores.
func defaultManaged() managed.Config {
	m := managed.DefaultConfig()
	m.Dir = ""
	m.NumParallel = 0
	m.CPUs = nil
	return m
}

// warmth maps models to their keep_alive and lists the priority models.
func warmth(models []ModelConfig) (map[string]time.Duration, []string) {
	if len(models) == 0 {
		return nil, nil
	}
	keep := make(map[string]time.Duration, len(models))
	var warm []string
	for _, mc := range models {
		keep[mc.Name] = mc.KeepAlive
		if mc.Priority {
			warm = append(warm, mc.Name)
		}
	}
	return keep, warm
}

// numCtx maps model names to their num_ctx; nil when there are no models.
func numCtx(models []ModelConfig) map[string]int {
	if len(models) == 0 {
		return nil
	}
	m := make(map[string]int, len(models))
	for _, mc := range models {
		m[mc.Name] = mc.NumCtx
	}
	return m
}

// Validate reports every setting that cannot work, as *KeyError values
// joined with errors.Join, or nil.
func (c Config) Validate() error { return c.validate(nil) }

// validate is Validate with the source of each key, as Load knows it.
func (c Config) validate(origin map[string]string) error {
	var errs []error
	for _, p := range c.problems() {
		keys := p.keys
		if keys == nil {
			keys = keysIn(p.section, p.err.Error())
		}
		if len(keys) == 0 {
			keys = []string{p.section}
		}
		keys = setKeys(keys, origin)
		errs = append(errs, &KeyError{Key: strings.Join(keys, ", "), Source: sources(keys, origin), Err: p.err})
	}
	return errors.Join(errs...)
}

// problem is one setting that cannot work. keys names it when known;
// otherwise the keys are inferred from section and the message.
type problem struct {
	section string
	keys    []string
	err     error
}

// problems are the settings that cannot work, in the order Validate reports
// them: log, connections, queue, each section's own, then the models.
func (c Config) problems() []problem {
	return slices.Concat(c.logProblems(), c.connProblems(), c.queueProblems(), c.sectionProblems(), c.modelProblems())
}

// keyProblem is the problem of the setting key.
func keyProblem(key string, err error) problem { return problem{keys: []string{key}, err: err} }

// logProblems are those of the log level and format.
func (c Config) logProblems() []problem {
	var ps []problem
	add := func(key string, err error) { ps = append(ps, keyProblem(key, err)) }
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", fmt.Errorf("level %q must be debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		add("log.format", fmt.Errorf("format %q must be auto, json or console", c.Log.Format))
	}
	return ps
}

// connProblems are those of the NATS connection and the HTTP listener.
func (c Config) connProblems() []problem {
	var ps []problem
	add := func(key string, err error) { ps = append(ps, keyProblem(key, err)) }
	if c.NATS.URL == "" {
		add("nats.url", errors.New("url is required"))
	}
	if c.NATS.Replicas < 0 || c.NATS.Replicas > 5 {
		add("nats.replicas", fmt.Errorf("replicas %d must be 0 (keep the files' value) to 5", c.NATS.Replicas))
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil && c.HTTP.Listen != "" {
		add("http.listen", fmt.Errorf("listen %q must be host:port: %w", c.HTTP.Listen, err))
	}
	return ps
}

// queueProblems are those of the queue's limits and timings.
func (c Config) queueProblems() []problem {
	var ps []problem
	add := func(key string, err error) { ps = append(ps, keyProblem(key, err)) }
	if c.Queue.MaxRequests < 1 {
		add("queue.max_requests", errors.New("max_requests must be at least 1"))
	}
	if c.Queue.AckWait <= 0 {
		add("queue.ack_wait", errors.New("ack_wait must be positive"))
	}
	if c.Queue.MaxDeliver < 1 {
		add("queue.max_deliver", errors.New("max_deliver must be at least 1"))
	}
	if c.Queue.MaxPerAgent < 1 {
		add("queue.max_per_agent", errors.New("max_per_agent must be at least 1"))
	}
	if c.Queue.NoWorkerWait <= 0 {
		add("queue.no_worker_wait", errors.New("no_worker_wait must be positive"))
	}
	if c.Queue.ResultsTTL < 2*c.Queue.AckWait {
		// A worker keeps a running batch's outcomes stored every third
		// of the TTL; after a crash the batch comes back within ack_wait,
		// and each outcome must still be there.
		add("queue.results_ttl", fmt.Errorf("results_ttl %s must be at least twice ack_wait (%s): a batch redelivered after a crash must find the outcomes its first run stored", c.Queue.ResultsTTL, c.Queue.AckWait))
	}
	if c.Queue.ResultsTTL <= 0 {
		add("queue.results_ttl", errors.New("results_ttl must be positive"))
	}
	return ps
}

// sectionProblems are those the sections' own Validate methods report.
func (c Config) sectionProblems() []problem {
	var ps []problem
	if err := c.NATS.TLS.Validate(); err != nil {
		ps = append(ps, keyProblem("nats.tls", err))
	}
	for _, s := range []struct {
		section string
		err     error
	}{
		{"server", c.Server.Validate()},
		{"api", c.API.Validate()},
		{"dispatcher", c.Dispatcher.Validate()},
		{"managed", c.ManagedFor().Validate()},
		{"worker", c.Worker.Validate()},
		{"ollama", c.Ollama.Validate()},
		{"optimizer", c.Optimizer.Validate()},
		{"pool", c.Pool.Validate()},
	} {
		if s.err != nil {
			ps = append(ps, problem{section: s.section, err: s.err})
		}
	}
	return ps
}

// modelProblems are those of the models list: names, and each model's
// max_predict and num_ctx.
func (c Config) modelProblems() []problem {
	var ps []problem
	add := func(key string, err error) { ps = append(ps, keyProblem(key, err)) }
	seen := make(map[string]int, len(c.Models))
	for i, m := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		switch {
		case m.Name == "":
			add(key+".name", errors.New("name is required"))
		case seen[m.Name] > 0:
			add(key+".name", fmt.Errorf("model %q is listed twice (also models[%d])", m.Name, seen[m.Name]-1))
		default:
			seen[m.Name] = i + 1
		}
		if m.MaxPredict < 0 || m.MaxPredict > maxPredict {
			add(key+".max_predict", fmt.Errorf("max_predict %d of %q must be 1 to %d, or 0 for dispatcher.max_predict", m.MaxPredict, m.Name, maxPredict))
		}
		if m.NumCtx < MinNumCtx || m.NumCtx > MaxNumCtx {
			add(key+".num_ctx", fmt.Errorf("num_ctx %d of %q must be %d to %d", m.NumCtx, m.Name, MinNumCtx, MaxNumCtx))
		}
	}
	return ps
}

// keysIn returns the settings under section whose names appear as words in
// msg: the sub-packages' Validate errors name their keys.
func keysIn(section, msg string) []string {
	words := strings.FieldsFunc(msg, func(r rune) bool {
		return r != '_' && !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	var keys []string
	for _, key := range schema.leaves {
		if !strings.HasPrefix(key, section+".") {
			continue
		}
		if slices.Contains(words, key[strings.LastIndex(key, ".")+1:]) {
			keys = append(keys, key)
		}
	}
	return keys
}

// setKeys returns the keys that a file, the environment or a flag set, when
// there are some: of "a and b must be positive", the one the user changed
// is the one to name.
func setKeys(keys []string, origin map[string]string) []string {
	var set []string
	for _, key := range keys {
		if source(key, origin) != "defaults" {
			set = append(set, key)
		}
	}
	if len(set) == 0 {
		return keys
	}
	return set
}

// source is origin's entry for key or the nearest parent that has one
// (models[1].num_ctx comes from wherever models came from), else "defaults".
func source(key string, origin map[string]string) string {
	for k := key; k != ""; k = parent(k) {
		if s, ok := origin[k]; ok {
			return s
		}
	}
	return "defaults"
}

// sources describes where the values of keys came from; empty when origin
// is nil.
func sources(keys []string, origin map[string]string) string {
	if origin == nil {
		return ""
	}
	var out []string
	for _, key := range keys {
		if src := source(key, origin); !slices.Contains(out, src) {
			out = append(out, src)
		}
	}
	return strings.Join(out, ", ")
}

// parent returns key without its last part: "models[1].num_ctx" ->
// "models[1]" -> "models" -> "".
func parent(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}
