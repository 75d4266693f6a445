package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	koanfmaps "github.com/knadh/koanf/maps"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"

	"github.com/sutazai/herd/internal/worker"
)

// envPrefix starts every environment variable Load reads; "__" separates
// the levels of the key after it.
const envPrefix = "HERD_"

// Load returns the configuration: Default(), then the YAML file at path,
// then HERD_* environment variables, then flags, each overriding the one
// before; then it fills what depends on other settings and validates.
//
// With path "" it reads DefaultPath if that exists; a path that is given
// but does not exist returns ErrFileNotFound. flags maps koanf paths such as
// "server.listen" to already-parsed values; only the keys present apply, so
// pass only flags the user set. A list (models, worker.models) from any
// layer replaces the one before as a whole; a model entry without
// keep_alive gets DefaultKeepAlive. When ollama.url is empty after all
// layers, a non-empty OLLAMA_HOST is used. A worker.id of "" becomes
// <hostname>-<pid>, a worker.cpu_budget of 0 the machine's cores.
//
// Settings that do not exist (ErrUnknownKey), values that cannot be decoded
// (such as a duration without a unit) and settings that cannot work are
// returned as *KeyError values naming the key and its source, all of them
// joined with errors.Join.
func Load(path string, flags map[string]any) (Config, error) {
	return load(path, flags, os.Environ())
}

// load is Load with the environment given, so that tests can keep the
// process's own HERD_* and OLLAMA_HOST out.
func load(path string, flags map[string]any, environ []string) (Config, error) {
	l := &loader{k: koanf.New("."), origin: make(map[string]string)}

	if err := l.k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		return Config{}, fmt.Errorf("config: load defaults: %w", err)
	}

	if err := l.loadFile(path); err != nil {
		return Config{}, err
	}
	if err := l.loadEnv(environ); err != nil {
		return Config{}, err
	}
	if len(flags) > 0 {
		fm, err := confmap.Provider(flags, ".").Read()
		if err != nil {
			return Config{}, fmt.Errorf("config: read flags: %w", err)
		}
		if err := l.merge(fm, func(key string) string { return "flag " + key }); err != nil {
			return Config{}, err
		}
	}
	if len(l.errs) > 0 {
		return Config{}, errors.Join(l.errs...)
	}

	var c Config
	if err := l.k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: decoderConfig()}); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	l.resolve(&c, environ)
	if err := c.validate(l.origin); err != nil {
		return Config{}, err
	}
	return c, nil
}

// loader merges the layers into k and remembers where each value came from.
type loader struct {
	k *koanf.Koanf
	// origin maps a flattened key to the source of its value; keys absent
	// come from the defaults.
	origin map[string]string
	// errs are the problems found in the layers so far.
	errs []error
}

// loadFile merges the YAML file at path (see Load for path "").
func (l *loader) loadFile(path string) error {
	if path == "" {
		if _, err := os.Stat(DefaultPath); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		path = DefaultPath
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrFileNotFound, path)
	}
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
		return fmt.Errorf("config: file %s: %w", path, err)
	}
	src := "file " + path
	return l.merge(fk.Raw(), func(string) string { return src })
}

// loadEnv merges the HERD_* variables of environ.
// toolVars are HERD_ variables that are not settings: they steer herd's
// tools and tests. Every other HERD_ variable must name a setting.
var toolVars = map[string]bool{
	"HERD_OLLAMA_BIN":      true, // the ollama binary (internal/managed)
	"HERD_REQUIRE_OLLAMA":  true, // tests fail instead of skipping without it
	"HERD_BENCH":           true, // run the performance suite
	"HERD_BENCH_SYNC":      true, // the suite's fsync modes
	"HERD_BENCH_DEBUG":     true, // the suite's stage timings
	"HERD_REQUIRE_BROWSER": true, // the browser test fails instead of skipping
	"HERD_ARTIFACTS":       true, // where tests save screenshots
	"HERD_FAULTS":          true, // run the multi-process fault suite (internal/faults)
}

func (l *loader) loadEnv(environ []string) error {
	names := make(map[string]string) // key -> variable
	m, err := env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			rest := strings.TrimPrefix(name, envPrefix)
			key := strings.ToLower(strings.ReplaceAll(rest, "__", "."))
			if toolVars[name] {
				return "", nil
			}
			// A variable without "__" that does not start with a section
			// name (HERD_SOMETHING_ELSE) is not meant for herd's settings
			// and is left alone; one that does (HERD_DISPATCHER_BATCH_SIZE)
			// is a likely typo and is reported below.
			if !strings.Contains(rest, "__") && schema.types[key] == nil {
				section, _, _ := strings.Cut(key, "_")
				if schema.types[section] == nil {
					return "", nil
				}
			}
			names[key] = name
			if t := schema.types[key]; t != nil && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String {
				return key, splitList(value)
			}
			return key, value
		},
	}).Read()
	if err != nil {
		return fmt.Errorf("config: read environment: %w", err)
	}
	return l.merge(m, func(key string) string {
		if name, ok := names[key]; ok {
			return "env " + name
		}
		return "env " + envName(key)
	})
}

// envName is the HERD_* variable for key.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}

// splitList splits a comma-separated list, dropping spaces and empty items.
func splitList(s string) []string {
	out := []string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// merge checks every key of the nested map m, records an error for each
// unknown key or undecodable value, and merges the rest into l.k, recording
// source(key) as their origin. Null values (a YAML key with nothing after
// it) are skipped, so they keep the value before.
func (l *loader) merge(m map[string]any, source func(key string) string) error {
	flat, _ := koanfmaps.Flatten(m, nil, ".")
	good := make(map[string]any, len(flat))
	for _, key := range slices.Sorted(maps.Keys(flat)) {
		v := flat[key]
		if v == nil {
			continue
		}
		if errs := checkValue(key, v); len(errs) > 0 {
			for _, e := range errs {
				e.Source = source(key)
				l.errs = append(l.errs, e)
			}
			continue
		}
		good[key] = v
		l.origin[key] = source(key)
	}
	if err := l.k.Load(confmap.Provider(good, "."), nil); err != nil {
		return fmt.Errorf("config: merge: %w", err)
	}
	return nil
}

// checkValue returns what is wrong with v as the value of key, without
// sources: nothing, ErrUnknownKey, or why it cannot be decoded.
func checkValue(key string, v any) []*KeyError {
	t, ok := schema.types[key]
	if !ok {
		return []*KeyError{{Key: key, Err: ErrUnknownKey}}
	}
	dc := decoderConfig()
	dc.Result = reflect.New(t).Interface()
	d, err := mapstructure.NewDecoder(dc)
	if err == nil {
		err = d.Decode(v)
	}
	if err == nil {
		return nil
	}
	errs := splitDecodeError(key, err)
	switch v.(type) {
	case string, bool, int, int64, uint64, float64:
		// Show a scalar value unless the error already does.
		if s := fmt.Sprint(v); len(errs) == 1 && !strings.Contains(errs[0].Err.Error(), strconv.Quote(s)) {
			errs[0].Err = fmt.Errorf("value %q: %w", s, errs[0].Err)
		}
	}
	return errs
}

// splitDecodeError turns a mapstructure error for the value of key into one
// KeyError per problem, each named by its full key (models[0].keep_alive),
// without mapstructure's "decoding failed" preamble. A list entry's unknown
// keys become ErrUnknownKey.
func splitDecodeError(key string, err error) []*KeyError {
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		var out []*KeyError
		for _, x := range e.Unwrap() {
			out = append(out, splitDecodeError(key, x)...)
		}
		return out
	case *mapstructure.DecodeError:
		switch name := e.Name(); {
		case name == "":
		case strings.HasPrefix(name, "["):
			key += name
		default:
			key += "." + name
		}
		return splitDecodeError(key, e.Unwrap())
	}
	if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "decoding failed") {
		return splitDecodeError(key, inner)
	}
	if names, ok := strings.CutPrefix(err.Error(), "has invalid keys: "); ok {
		return []*KeyError{{Key: key, Err: fmt.Errorf("%w: %s", ErrUnknownKey, names)}}
	}
	return []*KeyError{{Key: key, Err: err}}
}

// resolve fills the settings that depend on others or on the machine.
func (l *loader) resolve(c *Config, environ []string) {
	if c.Ollama.URL == "" {
		if host := lookup(environ, "OLLAMA_HOST"); host != "" {
			c.Ollama.URL = host
			l.origin["ollama.url"] = "env OLLAMA_HOST"
		}
	}
	if c.Worker.ID == "" || c.Worker.CPUBudget == 0 {
		d := worker.DefaultConfig()
		if c.Worker.ID == "" {
			c.Worker.ID = d.ID
		}
		if c.Worker.CPUBudget == 0 {
			c.Worker.CPUBudget = d.CPUBudget
		}
	}
	if len(c.Worker.Models) == 0 {
		c.Worker.Models = nil
	}
	if len(c.Managed.CPUs) == 0 {
		c.Managed.CPUs = nil
	}
	if len(c.Models) == 0 {
		c.Models = nil
	}
	if len(c.Optimizer.Context.Models) == 0 {
		c.Optimizer.Context.Models = nil
	}
	if len(c.Optimizer.Fallbacks) == 0 {
		c.Optimizer.Fallbacks = nil
	}
	if len(c.Optimizer.Budget.Models) == 0 {
		c.Optimizer.Budget.Models = nil
	}
	if len(c.Pool.CPUs) == 0 {
		c.Pool.CPUs = nil
	}
	if len(c.Optimizer.SLO.Profiles) == 0 {
		c.Optimizer.SLO.Profiles = nil
	}
	c.Worker.NumCtx = numCtx(c.Models)
	c.Worker.KeepAlive, c.Worker.Warm = warmth(c.Models)
	c.Optimizer.PriorityModels = slices.Clone(c.Worker.Warm)
	c.Worker.NumThread = numThread(c.Models)
	c.runner()
	c.Dispatcher.Capture = c.Capture.Enabled
	c.Dispatcher.NoWorkerWait = c.Queue.NoWorkerWait
	c.Dispatcher.MaxPerAgent = c.Queue.MaxPerAgent
}

// lookup returns the value of the variable name in environ, or "".
func lookup(environ []string, name string) string {
	for _, kv := range slices.Backward(environ) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// decoderConfig is koanf's default decoder configuration (string durations
// and encoding.TextUnmarshaler, weakly typed input), plus: unknown keys are
// errors (ErrorUnused), a duration error shows the value, a number is not a
// duration, and a model entry
// without keep_alive gets DefaultKeepAlive. koanf's extra "d" (days) unit is
// left out: durations are Go durations.
func decoderConfig() *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			modelDefaultsHook,
			durationHook,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc()),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
	}
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	modelType    = reflect.TypeFor[ModelConfig]()
)

// durationHook parses a duration string with an error that shows it, and
// rejects a plain non-zero number: YAML `ack_wait: 30` would otherwise mean
// 30 nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		d, err := time.ParseDuration(reflect.ValueOf(data).String())
		if err != nil {
			return nil, fmt.Errorf("%w: write a Go duration such as \"30s\", \"20ms\" or \"1h\"", err)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if !reflect.ValueOf(data).IsZero() {
			return nil, errors.New("a duration needs a unit: write a Go duration such as \"30s\", \"20ms\" or \"1h\"")
		}
	}
	return data, nil
}

// modelDefaultsHook gives a model entry without keep_alive the default.
func modelDefaultsHook(_, to reflect.Type, data any) (any, error) {
	m, ok := data.(map[string]any)
	if to != modelType || !ok || m["keep_alive"] != nil {
		return data, nil
	}
	m = maps.Clone(m)
	m["keep_alive"] = DefaultKeepAlive
	return m, nil
}

// schema is every koanf path of Config and its Go type.
var schema = newKeySchema(reflect.TypeFor[Config]())

type keySchema struct {
	// types holds every path: sections (structs) and leaves.
	types map[string]reflect.Type
	// leaves are the paths of settings that are not sections, sorted.
	leaves []string
}

func newKeySchema(t reflect.Type) keySchema {
	s := keySchema{types: make(map[string]reflect.Type)}
	s.walk(t, "")
	slices.Sort(s.leaves)
	return s
}

func (s *keySchema) walk(t reflect.Type, prefix string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		s.types[key] = f.Type
		if f.Type.Kind() == reflect.Struct {
			s.walk(f.Type, key)
		} else {
			s.leaves = append(s.leaves, key)
		}
	}
}
