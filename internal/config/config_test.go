package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

const herdYAML = "../../config/herd.yaml"

// writeFile writes a YAML file in a temporary directory and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "herd.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clearEnv removes OLLAMA_HOST and every HERD_* variable for the test, so
// that the machine's environment does not change what Load returns.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "OLLAMA_HOST" || strings.HasPrefix(name, envPrefix) {
			t.Setenv(name, "") // restores the value after the test
			os.Unsetenv(name)
		}
	}
}

// mustLoad is Load that fails the test on error.
func mustLoad(t *testing.T, path string, flags map[string]any) Config {
	t.Helper()
	c, err := Load(path, flags)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

// keyError returns the *KeyError for key inside err, failing the test when
// there is none.
func keyError(t *testing.T, err error, key string) *KeyError {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one about %s", key)
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var ke *KeyError
		if errors.As(e, &ke) && slices.Contains(strings.Split(ke.Key, ", "), key) {
			return ke
		}
	}
	t.Fatalf("error %q is not about %s", err, key)
	return nil
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestHerdYAMLMatchesDefault keeps config/herd.yaml and Default() from
// drifting apart.
func TestHerdYAMLMatchesDefault(t *testing.T) {
	got, err := load(herdYAML, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("config/herd.yaml differs from Default():\n got %+v\nwant %+v", got, want)
	}
}

// TestHerdYAMLListsEverySetting checks that the file names every setting,
// so that it stays the complete reference.
func TestHerdYAMLListsEverySetting(t *testing.T) {
	body, err := os.ReadFile(herdYAML)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, key := range schema.leaves {
		name := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(text, name+":") {
			t.Errorf("config/herd.yaml does not list %s", key)
		}
	}
}

func TestLoadWithoutFile(t *testing.T) {
	clearEnv(t)
	// The working directory is internal/config, which has no config/herd.yaml.
	if got, want := mustLoad(t, "", nil), Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(\"\") = %+v, want the defaults %+v", got, want)
	}
}

func TestLoadMissingExplicitFile(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, nil)
	if !errors.Is(err, ErrFileNotFound) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want ErrFileNotFound naming %s", err, path)
	}
}

func TestLoadFile(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, `
dispatcher:
  batch_size: 8
  max_wait: 5ms
  sched:
    low_age_after: 10s
worker:
  models: [tinyllama]
nats:
log:
`)
	c := mustLoad(t, path, nil)
	want := Default()
	want.Dispatcher.BatchSize = 8
	want.Dispatcher.MaxWait = 5 * time.Millisecond
	want.Dispatcher.Sched.LowAgeAfter = 10 * time.Second
	want.Worker.Models = []string{"tinyllama"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "dispatcher:\n  batch_size: 8\nworker:\n  slots: 3\n")
	t.Setenv("HERD_DISPATCHER__BATCH_SIZE", "12")
	t.Setenv("HERD_WORKER__MODELS", "tinyllama, llama3.2:3b")
	t.Setenv("HERD_OLLAMA__URL", "http://ollama:11434")
	t.Setenv("HERD_DISPATCHER__SCHED__NORMAL_AGE_AFTER", "2s")
	t.Setenv("HERD_SERVER__SYNC_ALWAYS", "false")
	t.Setenv("HERD_NATS__URL", "nats://a:4222,nats://b:4222")

	c := mustLoad(t, path, nil)
	if c.Dispatcher.BatchSize != 12 {
		t.Errorf("batch_size = %d, want 12 from env", c.Dispatcher.BatchSize)
	}
	if c.Worker.Slots != 3 {
		t.Errorf("slots = %d, want 3 from the file", c.Worker.Slots)
	}
	if want := []string{"tinyllama", "llama3.2:3b"}; !reflect.DeepEqual(c.Worker.Models, want) {
		t.Errorf("worker.models = %q, want %q", c.Worker.Models, want)
	}
	if c.Ollama.URL != "http://ollama:11434" {
		t.Errorf("ollama.url = %q", c.Ollama.URL)
	}
	if c.Dispatcher.Sched.NormalAgeAfter != 2*time.Second {
		t.Errorf("dispatcher.sched.normal_age_after = %v, want 2s", c.Dispatcher.Sched.NormalAgeAfter)
	}
	if c.Server.SyncAlways {
		t.Error("server.sync_always = true, want false from env")
	}
	if c.NATS.URL != "nats://a:4222,nats://b:4222" {
		t.Errorf("nats.url = %q: a string setting must not be split on commas", c.NATS.URL)
	}
}

func TestPrecedence(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "server:\n  listen: 127.0.0.1:5000\n  data: /file\nhttp:\n  listen: 127.0.0.1:9000\n")
	t.Setenv("HERD_SERVER__LISTEN", "127.0.0.1:6000")
	t.Setenv("HERD_SERVER__DATA", "/env")
	c := mustLoad(t, path, map[string]any{"server.listen": "127.0.0.1:7000"})

	for _, tc := range []struct{ key, got, want string }{
		{"server.listen", c.Server.Listen, "127.0.0.1:7000"}, // flag > env > file
		{"server.data", c.Server.DataDir, "/env"},            // env > file
		{"http.listen", c.HTTP.Listen, "127.0.0.1:9000"},     // file > default
		{"nats.url", c.NATS.URL, "nats://127.0.0.1:4222"},    // default
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, tc.got, tc.want)
		}
	}
}

func TestFlagValues(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, "", map[string]any{
		"worker.slots":          4,
		"dispatcher.max_wait":   50 * time.Millisecond,
		"queue.ack_wait":        "1m",
		"worker.models":         []string{"herd-tiny"},
		"server.max_payload":    1 << 20,
		"worker.cpu_budget":     1.5,
		"dispatcher.batch_size": "4",
	})
	if c.Worker.Slots != 4 || c.Dispatcher.MaxWait != 50*time.Millisecond || c.Queue.AckWait != time.Minute ||
		!reflect.DeepEqual(c.Worker.Models, []string{"herd-tiny"}) || c.Server.MaxPayload != 1<<20 ||
		c.Worker.CPUBudget != 1.5 || c.Dispatcher.BatchSize != 4 {
		t.Errorf("flags not applied: %+v", c)
	}
}

func TestUnknownKey(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name, yaml, env, flag, key, source string
	}{
		{name: "file", yaml: "dispatcher:\n  batchsize: 8\n", key: "dispatcher.batchsize", source: "file "},
		{name: "file section", yaml: "dispatch:\n  batch_size: 8\n", key: "dispatch.batch_size", source: "file "},
		{name: "file model entry", yaml: "models:\n  - name: x\n    num_ctx: 2048\n    numctx: 1\n", key: "models[0]", source: "file "},
		{name: "env", env: "HERD_DISPATCHER_BATCH_SIZE", key: "dispatcher_batch_size", source: "env HERD_DISPATCHER_BATCH_SIZE"},
		{name: "flag", flag: "server.listn", key: "server.listn", source: "flag server.listn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.yaml)
			if tc.env != "" {
				t.Setenv(tc.env, "8")
			}
			var flags map[string]any
			if tc.flag != "" {
				flags = map[string]any{tc.flag: "x"}
			}
			_, err := Load(path, flags)
			ke := keyError(t, err, tc.key)
			if !strings.HasPrefix(ke.Source, tc.source) {
				t.Errorf("source = %q, want %q...", ke.Source, tc.source)
			}
			if !errors.Is(err, ErrUnknownKey) {
				t.Errorf("err = %v, want ErrUnknownKey", err)
			}
		})
	}
}

func TestBadValue(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name, yaml, env, key, source, msg string
	}{
		{name: "duration", yaml: "dispatcher:\n  max_wait: 20 ms\n", key: "dispatcher.max_wait", source: "file ", msg: `unknown unit " ms" in duration "20 ms"`},
		{name: "duration without unit", yaml: "queue:\n  ack_wait: 30\n", key: "queue.ack_wait", source: "file ", msg: "needs a unit"},
		{name: "duration in model", yaml: "models:\n  - name: x\n    num_ctx: 2048\n    keep_alive: soon\n", key: "models[0].keep_alive", source: "file ", msg: `invalid duration "soon"`},
		{name: "env duration", env: "HERD_OLLAMA__TIMEOUT=forever", key: "ollama.timeout", source: "env HERD_OLLAMA__TIMEOUT", msg: `invalid duration "forever"`},
		{name: "env int", env: "HERD_WORKER__SLOTS=two", key: "worker.slots", source: "env HERD_WORKER__SLOTS", msg: `"two"`},
		{name: "section as value", env: "HERD_WORKER=x", key: "worker", source: "env HERD_WORKER", msg: "map"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.yaml)
			if name, value, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(name, value)
			}
			_, err := Load(path, nil)
			ke := keyError(t, err, tc.key)
			if !strings.HasPrefix(ke.Source, tc.source) || !strings.Contains(ke.Error(), tc.msg) {
				t.Errorf("err = %q, want source %q and %q", ke, tc.source, tc.msg)
			}
		})
	}
}

func TestInvalidSettingNamesKeyAndSource(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name, yaml, env string
		flags           map[string]any
		key, source     string
	}{
		{name: "sub-config from env", env: "HERD_DISPATCHER__BATCH_SIZE=0", key: "dispatcher.batch_size", source: "env HERD_DISPATCHER__BATCH_SIZE"},
		{name: "own section from file", yaml: "log:\n  level: loud\n", key: "log.level", source: "file "},
		{name: "nested sched from flag", flags: map[string]any{"worker.sched.low_age_after": "-1s"}, key: "worker.sched.low_age_after", source: "flag worker.sched.low_age_after"},
		{name: "server from file", yaml: "server:\n  listen: nowhere\n", key: "server.listen", source: "file "},
		{name: "model num_ctx", yaml: "models:\n  - name: x\n    num_ctx: 100\n", key: "models[0].num_ctx", source: "file "},
		{name: "duplicate model", yaml: "models:\n  - {name: x, num_ctx: 512}\n  - {name: x, num_ctx: 512}\n", key: "models[1].name", source: "file "},
		{name: "empty model name", yaml: "models:\n  - {num_ctx: 512}\n", key: "models[0].name", source: "file "},
		{name: "reserved slots", yaml: "worker:\n  slots: 1\n  reserved_high_slots: 1\n", key: "worker.slots", source: "file "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.yaml)
			if name, value, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(name, value)
			}
			_, err := Load(path, tc.flags)
			ke := keyError(t, err, tc.key)
			if !strings.HasPrefix(ke.Source, tc.source) {
				t.Errorf("source = %q, want %q...", ke.Source, tc.source)
			}
		})
	}
}

func TestModelsListReplacesDefaults(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "models:\n  - name: phi3:mini\n    num_ctx: 4096\n    priority: true\n")
	c := mustLoad(t, path, nil)
	want := []ModelConfig{{Name: "phi3:mini", NumCtx: 4096, KeepAlive: DefaultKeepAlive, Priority: true}}
	if !reflect.DeepEqual(c.Models, want) {
		t.Errorf("models = %+v, want only %+v", c.Models, want)
	}
	if want := map[string]int{"phi3:mini": 4096}; !reflect.DeepEqual(c.Worker.NumCtx, want) {
		t.Errorf("worker NumCtx = %v, want %v", c.Worker.NumCtx, want)
	}

	// A shorter list must not keep fields of the default entry at its index.
	path = writeFile(t, "models:\n  - name: a\n    num_ctx: 512\n    keep_alive: 0s\n")
	c = mustLoad(t, path, nil)
	if want := []ModelConfig{{Name: "a", NumCtx: 512}}; !reflect.DeepEqual(c.Models, want) {
		t.Errorf("models = %+v, want %+v", c.Models, want)
	}

	// An empty list means no models.
	c = mustLoad(t, writeFile(t, "models: []\n"), nil)
	if c.Models != nil || c.Worker.NumCtx != nil {
		t.Errorf("models = %+v, NumCtx = %v, want none", c.Models, c.Worker.NumCtx)
	}
}

func TestOllamaHost(t *testing.T) {
	clearEnv(t)
	t.Run("fallback", func(t *testing.T) {
		t.Setenv("OLLAMA_HOST", "127.0.0.1:11500")
		if c := mustLoad(t, "", nil); c.Ollama.URL != "127.0.0.1:11500" {
			t.Errorf("ollama.url = %q, want OLLAMA_HOST", c.Ollama.URL)
		}
	})
	t.Run("configured url wins", func(t *testing.T) {
		t.Setenv("OLLAMA_HOST", "127.0.0.1:11500")
		t.Setenv("HERD_OLLAMA__URL", "http://gpu:11434")
		if c := mustLoad(t, "", nil); c.Ollama.URL != "http://gpu:11434" {
			t.Errorf("ollama.url = %q, want HERD_OLLAMA__URL", c.Ollama.URL)
		}
	})
	t.Run("bad OLLAMA_HOST is named", func(t *testing.T) {
		t.Setenv("OLLAMA_HOST", "http://")
		_, err := Load("", nil)
		if ke := keyError(t, err, "ollama.url"); ke.Source != "env OLLAMA_HOST" {
			t.Errorf("source = %q, want env OLLAMA_HOST", ke.Source)
		}
	})
}

func TestWorkerAutoValues(t *testing.T) {
	clearEnv(t)
	c := mustLoad(t, writeFile(t, "worker:\n  id: \"\"\n  cpu_budget: 0\n"), nil)
	if c.Worker.ID == "" || c.Worker.CPUBudget != float64(runtime.NumCPU()) {
		t.Errorf("id = %q, cpu_budget = %v, want <hostname>-<pid> and %d", c.Worker.ID, c.Worker.CPUBudget, runtime.NumCPU())
	}
	c = mustLoad(t, "", map[string]any{"worker.id": "w1"})
	if c.Worker.ID != "w1" {
		t.Errorf("id = %q, want w1", c.Worker.ID)
	}
}

func TestLogger(t *testing.T) {
	tests := []struct {
		level, format string
		terminal      bool
		wantLevel     zapcore.Level
		wantEncoding  string
	}{
		{"info", "auto", false, zapcore.InfoLevel, "json"},
		{"debug", "auto", true, zapcore.DebugLevel, "console"},
		{"warn", "json", true, zapcore.WarnLevel, "json"},
		{"error", "console", false, zapcore.ErrorLevel, "console"},
	}
	for _, tc := range tests {
		t.Run(tc.level+"/"+tc.format, func(t *testing.T) {
			zc, err := LogConfig{Level: tc.level, Format: tc.format}.zapConfig(tc.terminal)
			if err != nil {
				t.Fatal(err)
			}
			if zc.Level.Level() != tc.wantLevel || zc.Encoding != tc.wantEncoding {
				t.Errorf("level %v encoding %s, want %v %s", zc.Level.Level(), zc.Encoding, tc.wantLevel, tc.wantEncoding)
			}
		})
	}

	c := Default()
	c.Log.Level = "debug"
	log, err := c.Logger()
	if err != nil {
		t.Fatal(err)
	}
	if !log.Core().Enabled(zapcore.DebugLevel) {
		t.Error("debug is not enabled at log.level debug")
	}

	c.Log.Format = "xml"
	if _, err := c.Logger(); err == nil {
		t.Error("format xml accepted")
	}
}
