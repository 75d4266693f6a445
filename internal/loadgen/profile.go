package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sutazai/herd/internal/wire"
)

// DefaultRepeatRatio is the share of requests that repeat an earlier one
// when neither the fleet nor the profile sets it.
const DefaultRepeatRatio = 0.3

// Repeat scopes: whose earlier requests a repeat copies.
const (
	ScopeProfile = "profile"
	ScopeAgent   = "agent"
)

// The operations a profile can weight.
const (
	OpGenerate = "generate"
	OpChat     = "chat"
	OpEmbed    = "embed"
)

// Fleet is the agents whose traffic is generated, in profiles. The zero
// value is not valid; start from DefaultFleet or Parse.
type Fleet struct {
	// RepeatRatio is the share of repeats for profiles that set none.
	// Default DefaultRepeatRatio (0.3); nil means the default.
	RepeatRatio *float64 `yaml:"repeat_ratio,omitempty"`
	// Profiles are the kinds of agents. At least one, names unique.
	Profiles []Profile `yaml:"profiles"`
}

// Profile is a kind of agent and the traffic each such agent sends. See the
// package documentation for the traffic model.
type Profile struct {
	// Name names the profile and its agents (<name>-01, ...). Required:
	// 1-100 characters of A-Z a-z 0-9 _ = -.
	Name string `yaml:"name"`
	// Agents is how many agents have this profile. Required, >= 1.
	Agents int `yaml:"agents"`
	// Concurrency is how many consumers (independent request streams) each
	// agent runs. Default 1.
	Concurrency int `yaml:"concurrency,omitempty"`
	// Rate is the requests per second of one consumer. Required, > 0.
	Rate float64 `yaml:"rate"`
	// Priorities weights high, normal and low. Default all normal.
	Priorities map[wire.Priority]float64 `yaml:"priorities,omitempty"`
	// Models weights the model names requests use. Required.
	Models map[string]float64 `yaml:"models"`
	// Ops weights generate, chat and embed. Default all generate.
	Ops map[string]float64 `yaml:"ops,omitempty"`
	// PromptWords is the distribution of prompt lengths in words.
	PromptWords Words `yaml:"prompt_words"`
	// NumPredict sets options.num_predict on generate and chat; 0 leaves it
	// out. Default 0.
	NumPredict int `yaml:"num_predict,omitempty"`
	// NumCtx sets options.num_ctx on generate and chat: 0 (left out, so
	// herd's per-model value applies) or 256 to 1048576. Default 0.
	NumCtx int `yaml:"num_ctx,omitempty"`
	// System is the system prompt of generate and chat requests. Default
	// none.
	System string `yaml:"system,omitempty"`
	// RepeatRatio is the share of requests that repeat an earlier body,
	// 0 <= r < 1. nil takes the fleet's.
	RepeatRatio *float64 `yaml:"repeat_ratio,omitempty"`
	// RepeatScope is ScopeProfile (default: any agent of the profile) or
	// ScopeAgent (only the same agent's earlier requests).
	RepeatScope string `yaml:"repeat_scope,omitempty"`
	// Sampled is the share of fresh generate and chat requests sampled at
	// Temperature; they are never repeated. Default 0: every request is at
	// temperature 0.
	Sampled float64 `yaml:"sampled,omitempty"`
	// Temperature of sampled requests; > 0 when Sampled > 0.
	Temperature float64 `yaml:"temperature,omitempty"`
	// Timeout is sent as Herd-Timeout on every request; 0 sends none.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Words is a lognormal distribution of prompt lengths in words.
type Words struct {
	// Median words. Required, > 0.
	Median float64 `yaml:"median"`
	// Sigma is the standard deviation of the length's natural log; 0
	// always gives Median. Default 0.
	Sigma float64 `yaml:"sigma,omitempty"`
	// Min words, >= 1. Default 1.
	Min int `yaml:"min,omitempty"`
	// Max words, >= Min. Default 10 × Median.
	Max int `yaml:"max,omitempty"`
}

// DefaultFleet returns the fleet herd was built for: 69 agents with 174
// consumers in three profiles (see the package documentation). Each call
// returns a new copy.
func DefaultFleet() Fleet {
	repeat := DefaultRepeatRatio
	return Fleet{RepeatRatio: &repeat, Profiles: []Profile{
		{
			Name: "high-throughput", Agents: 40, Concurrency: 2, Rate: 0.1,
			Priorities:  map[wire.Priority]float64{wire.High: 0.10, wire.Normal: 0.85, wire.Low: 0.05},
			Models:      map[string]float64{"llama3.2:3b": 0.7, "herd-tiny": 0.3},
			Ops:         map[string]float64{OpGenerate: 0.6, OpChat: 0.4},
			PromptWords: Words{Median: 40, Sigma: 0.6, Min: 3, Max: 400},
			NumPredict:  64,
		},
		{
			Name: "complex-reasoning", Agents: 9, Concurrency: 6, Rate: 0.005,
			Priorities:  map[wire.Priority]float64{wire.High: 0.8, wire.Normal: 0.2},
			Models:      map[string]float64{"deepseek-r1:8b": 1},
			Ops:         map[string]float64{OpChat: 0.7, OpGenerate: 0.3},
			PromptWords: Words{Median: 600, Sigma: 0.5, Min: 100, Max: 6000},
			NumPredict:  512,
			NumCtx:      8192,
			System:      "You are a careful analyst. Reason step by step and state your assumptions.",
			Sampled:     0.3,
			Temperature: 0.6,
			Timeout:     10 * time.Minute,
		},
		{
			Name: "utility", Agents: 20, Concurrency: 2, Rate: 0.05,
			Priorities:  map[wire.Priority]float64{wire.Normal: 0.2, wire.Low: 0.8},
			Models:      map[string]float64{"tinyllama": 1},
			Ops:         map[string]float64{OpEmbed: 0.6, OpGenerate: 0.4},
			PromptWords: Words{Median: 20, Sigma: 0.8, Min: 1, Max: 200},
			NumPredict:  32,
		},
	}}
}

// Load reads a fleet file (YAML or JSON) and validates it. Errors wrap
// ErrProfile and name the file.
func Load(path string) (Fleet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Fleet{}, err
	}
	f, err := Parse(b)
	if err != nil {
		return Fleet{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a fleet from YAML or JSON, refusing unknown keys, and
// validates it. Errors wrap ErrProfile.
func Parse(data []byte) (Fleet, error) {
	var f Fleet
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return Fleet{}, fmt.Errorf("%w: the file is empty", ErrProfile)
		}
		return Fleet{}, fmt.Errorf("%w: %v", ErrProfile, err)
	}
	if err := f.Validate(); err != nil {
		return Fleet{}, err
	}
	return f, nil
}

// Marshal returns the fleet as YAML in the file format Parse reads.
func (f Fleet) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,100}$`)

// Validate reports the first thing wrong with f, wrapping ErrProfile.
func (f Fleet) Validate() error {
	if len(f.Profiles) == 0 {
		return fmt.Errorf("%w: no profiles", ErrProfile)
	}
	if f.RepeatRatio != nil && !ratio(*f.RepeatRatio) {
		return fmt.Errorf("%w: repeat_ratio %v must be at least 0 and below 1", ErrProfile, *f.RepeatRatio)
	}
	seen := map[string]bool{}
	for i := range f.Profiles {
		p := &f.Profiles[i]
		if err := p.validate(f.repeatRatio(p)); err != nil {
			name := p.Name
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			return fmt.Errorf("%w: profile %s: %v", ErrProfile, name, err)
		}
		if seen[p.Name] {
			return fmt.Errorf("%w: profile name %q is used twice", ErrProfile, p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

func ratio(r float64) bool { return r >= 0 && r < 1 }

func (p *Profile) validate(repeat float64) error {
	switch {
	case !nameRE.MatchString(p.Name):
		return fmt.Errorf("name %q must be 1-100 characters of A-Z a-z 0-9 _ = -", p.Name)
	case p.Agents < 1:
		return fmt.Errorf("agents is %d; at least 1", p.Agents)
	case p.Concurrency < 0:
		return fmt.Errorf("concurrency is %d; at least 1 (0 means 1)", p.Concurrency)
	case !(p.Rate > 0) || math.IsInf(p.Rate, 0):
		return fmt.Errorf("rate is %v; requests per second of one consumer, above 0", p.Rate)
	case p.NumPredict < 0:
		return fmt.Errorf("num_predict is %d; 0 (not set) or more", p.NumPredict)
	case p.NumCtx != 0 && (p.NumCtx < 256 || p.NumCtx > 1<<20):
		return fmt.Errorf("num_ctx is %d; 0 (not set) or 256 to 1048576", p.NumCtx)
	case !ratio(repeat):
		return fmt.Errorf("repeat_ratio %v must be at least 0 and below 1", repeat)
	case p.RepeatScope != "" && p.RepeatScope != ScopeProfile && p.RepeatScope != ScopeAgent:
		return fmt.Errorf("repeat_scope %q is not %s or %s", p.RepeatScope, ScopeProfile, ScopeAgent)
	case p.Sampled < 0 || p.Sampled > 1:
		return fmt.Errorf("sampled %v must be from 0 to 1", p.Sampled)
	case p.Sampled > 0 && !(p.Temperature > 0):
		return fmt.Errorf("sampled requests need a temperature above 0")
	case p.Temperature < 0:
		return fmt.Errorf("temperature %v is below 0", p.Temperature)
	case p.Timeout < 0:
		return fmt.Errorf("timeout %v is below 0", p.Timeout)
	}
	if _, err := weights(p.Priorities, func(k wire.Priority) bool { return k.Valid() }, "priorities", "high, normal or low"); err != nil {
		return err
	}
	if len(p.Models) == 0 {
		return fmt.Errorf("models is empty; give at least one model with a weight")
	}
	if _, err := weights(p.Models, func(m string) bool {
		return m != "" && !strings.ContainsAny(m, " \t\r\n\\") && !strings.Contains(m, "..")
	}, "models", "a model name"); err != nil {
		return err
	}
	if _, err := weights(p.Ops, func(op string) bool {
		return op == OpGenerate || op == OpChat || op == OpEmbed
	}, "ops", "generate, chat or embed"); err != nil {
		return err
	}
	// Sampled requests are never repeated, so an all-embed or all-sampled
	// profile could owe repeats for ever.
	if repeat > 0 && p.Sampled == 1 && p.Ops[OpEmbed] == 0 {
		return fmt.Errorf("repeat_ratio %v needs requests at temperature 0, but sampled is 1", repeat)
	}
	w := p.PromptWords
	switch {
	case !(w.Median >= 1) || math.IsInf(w.Median, 0):
		return fmt.Errorf("prompt_words.median is %v; at least 1", w.Median)
	case w.Sigma < 0 || w.Sigma > 5:
		return fmt.Errorf("prompt_words.sigma is %v; from 0 to 5", w.Sigma)
	case w.Min < 0:
		return fmt.Errorf("prompt_words.min is %d; at least 1 (0 means 1)", w.Min)
	case w.Max != 0 && w.Max < max(w.Min, 1):
		return fmt.Errorf("prompt_words.max %d is below min %d", w.Max, max(w.Min, 1))
	case w.Max > 100000:
		return fmt.Errorf("prompt_words.max %d is above 100000 (herd refuses bodies over 512 KiB by default)", w.Max)
	}
	if len(agentName(p.Name, p.Agents, p.Agents)) > 128 {
		return fmt.Errorf("agent names would be longer than 128 characters")
	}
	return nil
}

// weights checks a weight map and returns its keys in sorted order.
func weights[K ~string](m map[K]float64, valid func(K) bool, field, what string) ([]K, error) {
	keys := slices.Sorted(maps.Keys(m))
	sum := 0.0
	for _, k := range keys {
		if !valid(k) {
			return nil, fmt.Errorf("%s: %q is not %s", field, k, what)
		}
		w := m[k]
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("%s: weight of %q is %v; 0 or more", field, k, w)
		}
		sum += w
	}
	if len(m) > 0 && !(sum > 0) {
		return nil, fmt.Errorf("%s: every weight is 0", field)
	}
	return keys, nil
}

// repeatRatio is the profile's repeat ratio after defaults.
func (f Fleet) repeatRatio(p *Profile) float64 {
	switch {
	case p.RepeatRatio != nil:
		return *p.RepeatRatio
	case f.RepeatRatio != nil:
		return *f.RepeatRatio
	}
	return DefaultRepeatRatio
}

// Agents returns how many agents the fleet has.
func (f Fleet) Agents() int {
	n := 0
	for _, p := range f.Profiles {
		n += p.Agents
	}
	return n
}

// Consumers returns the fleet's concurrent consumers: the sum over
// profiles of agents × concurrency.
func (f Fleet) Consumers() int {
	n := 0
	for _, p := range f.Profiles {
		n += p.Agents * max(p.Concurrency, 1)
	}
	return n
}

// Rate returns the fleet's mean requests per second (before any
// Options.RateScale).
func (f Fleet) Rate() float64 {
	r := 0.0
	for _, p := range f.Profiles {
		r += float64(p.Agents*max(p.Concurrency, 1)) * p.Rate
	}
	return r
}

// Models returns every model the fleet names, sorted.
func (f Fleet) Models() []string {
	set := map[string]bool{}
	for _, p := range f.Profiles {
		for m := range p.Models {
			set[m] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// MapModels returns a copy of f whose profiles use to[m] instead of each
// model m; the key "*" maps every model not named otherwise. Weights of
// models mapped to the same name add up. It returns an error wrapping
// ErrProfile when a key names no model of the fleet (a likely typo).
func (f Fleet) MapModels(to map[string]string) (Fleet, error) {
	have := f.Models()
	for from, m := range to {
		if from != "*" && !slices.Contains(have, from) {
			return Fleet{}, fmt.Errorf("%w: --models maps %q, which no profile uses (models: %s)", ErrProfile, from, strings.Join(have, ", "))
		}
		if m == "" {
			return Fleet{}, fmt.Errorf("%w: --models maps %q to an empty name", ErrProfile, from)
		}
	}
	out := f.clone()
	for i := range out.Profiles {
		p := &out.Profiles[i]
		mapped := map[string]float64{}
		for m, w := range p.Models {
			n, ok := to[m]
			if !ok {
				n, ok = to["*"]
			}
			if !ok {
				n = m
			}
			mapped[n] += w
		}
		p.Models = mapped
	}
	return out, nil
}

// ParseModelMap parses a --models value: comma-separated from=to pairs
// ("llama3.2:3b=herd-tiny,deepseek-r1:8b=qwen3:4b"), where from may be "*"
// for every other model, or a single name that every model maps to
// ("herd-tiny", the same as "*=herd-tiny").
func ParseModelMap(s string) (map[string]string, error) {
	out := map[string]string{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	if !strings.ContainsAny(s, "=,") {
		out["*"] = s
		return out, nil
	}
	for pair := range strings.SplitSeq(s, ",") {
		from, to, ok := strings.Cut(strings.TrimSpace(pair), "=")
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if !ok || from == "" || to == "" {
			return nil, fmt.Errorf("%w: --models %q: %q is not from=to", ErrProfile, s, pair)
		}
		if _, dup := out[from]; dup {
			return nil, fmt.Errorf("%w: --models %q maps %q twice", ErrProfile, s, from)
		}
		out[from] = to
	}
	return out, nil
}

// clone returns a deep copy of f.
func (f Fleet) clone() Fleet {
	out := Fleet{RepeatRatio: clonePtr(f.RepeatRatio), Profiles: slices.Clone(f.Profiles)}
	for i := range out.Profiles {
		p := &out.Profiles[i]
		p.Priorities = maps.Clone(p.Priorities)
		p.Models = maps.Clone(p.Models)
		p.Ops = maps.Clone(p.Ops)
		p.RepeatRatio = clonePtr(p.RepeatRatio)
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// agentName returns the name of agent i (1-based) of a profile with n
// agents: <name>-<i>, zero-padded to the width of n (at least two digits).
func agentName(profile string, i, n int) string {
	width := max(len(fmt.Sprint(n)), 2)
	return fmt.Sprintf("%s-%0*d", profile, width, i)
}
