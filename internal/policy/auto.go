package policy

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

// AutoConfig is the model selection for requests with "model": "auto".
type AutoConfig struct {
	// Profiles are the agent profiles, matched in order. Default:
	// high-throughput, complex-reasoning and utility (DefaultAutoConfig).
	Profiles []Profile `koanf:"profiles"`
	// DefaultProfile names the profile of agents that match no profile;
	// empty leaves them without one (SelectModel returns ErrNoProfile).
	// Default utility.
	DefaultProfile string `koanf:"default_profile"`
	// MaxQueueDepth: a model with this many requests waiting is busy and
	// the next model of the profile is chosen; 0 ignores depth. Default 32.
	MaxQueueDepth int `koanf:"max_queue_depth"`
	// MaxQueueAge: a model whose oldest waiting request has waited this
	// long is busy; 0 ignores age. Default 10s.
	MaxQueueAge time.Duration `koanf:"max_queue_age"`
	// MaxLatency: a model whose p95 latency is this high is busy; 0
	// ignores latency. Default 60s.
	MaxLatency time.Duration `koanf:"max_latency"`
}

// Profile is a kind of agent and the models that serve it.
type Profile struct {
	// Name names the profile, e.g. complex-reasoning. Required.
	Name string `koanf:"name"`
	// Agents are glob patterns (path.Match: *, ?, [a-z]) matched against
	// the agent's name. Default none.
	Agents []string `koanf:"agents"`
	// Models are the models to use, the default first, then the fallbacks
	// in order. Required.
	Models []string `koanf:"models"`
	// PriorityCeiling is the highest priority the profile's requests run
	// at: high, normal or low; a request asking for more is lowered to it.
	// Required.
	PriorityCeiling wire.Priority `koanf:"priority_ceiling"`
	// NumCtx is the num_ctx given to the profile's requests; 0 leaves the
	// model's own. Default 0.
	NumCtx int `koanf:"num_ctx"`
	// CacheScope says whether the profile's agents share cached and
	// coalesced answers with every agent ("global") or only with
	// themselves ("agent"); empty keeps dispatcher.cache_scope. Default
	// empty.
	CacheScope string `koanf:"cache_scope"`
}

// Cache scopes (dispatcher.cache_scope, Profile.CacheScope).
const (
	CacheScopeGlobal = "global"
	CacheScopeAgent  = "agent"
)

// CacheScope returns the cache scope of agent's requests: its profile's
// when it sets one, else def.
func CacheScope(cfg AutoConfig, agent, def string) string {
	if p, _, ok := matchProfile(cfg, agent); ok && p.CacheScope != "" {
		return p.CacheScope
	}
	return def
}

// DefaultAutoConfig returns the defaults: three profiles over the models
// of config/herd.yaml. High-throughput agents (batch-*, ingest-*, *-bulk)
// get small fast models up to high priority; complex-reasoning agents
// (*reason*, *planner*, *architect*) get the largest model, at most normal
// priority so their long calls do not hold the slots high priority needs;
// utility agents (everyone else) get a mid-size model at low priority.
func DefaultAutoConfig() AutoConfig {
	return AutoConfig{
		Profiles: []Profile{
			{Name: "high-throughput", Agents: []string{"batch-*", "ingest-*", "*-bulk"}, Models: []string{"tinyllama", "herd-tiny"}, PriorityCeiling: wire.High, NumCtx: 2048},
			{Name: "complex-reasoning", Agents: []string{"*reason*", "*planner*", "*architect*"}, Models: []string{"deepseek-r1:8b", "llama3.2:3b", "tinyllama"}, PriorityCeiling: wire.Normal, NumCtx: 8192},
			{Name: "utility", Models: []string{"llama3.2:3b", "tinyllama"}, PriorityCeiling: wire.Low, NumCtx: 4096},
		},
		DefaultProfile: "utility",
		MaxQueueDepth:  32,
		MaxQueueAge:    10 * time.Second,
		MaxLatency:     time.Minute,
	}
}

// Validate reports a setting that cannot work.
func (c AutoConfig) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.Profiles {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: name is required", i))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: name %q is listed twice", i, p.Name))
		}
		seen[p.Name] = true
		for _, a := range p.Agents {
			if _, err := path.Match(a, ""); err != nil {
				errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: agents pattern %q: %w", i, a, err))
			}
		}
		if len(p.Models) == 0 || slices.Contains(p.Models, "") {
			errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: models of %q must list at least one model name", i, p.Name))
		}
		if !p.PriorityCeiling.Valid() {
			errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: priority_ceiling %q of %q must be high, normal or low", i, p.PriorityCeiling, p.Name))
		}
		if p.CacheScope != "" && p.CacheScope != CacheScopeGlobal && p.CacheScope != CacheScopeAgent {
			errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: cache_scope %q of %q must be global or agent", i, p.CacheScope, p.Name))
		}
		if p.NumCtx != 0 && (p.NumCtx < minNumCtx || p.NumCtx > maxNumCtx) {
			errs = append(errs, fmt.Errorf("policy: auto: profiles[%d]: num_ctx %d of %q must be 0 or %d to %d", i, p.NumCtx, p.Name, minNumCtx, maxNumCtx))
		}
	}
	if c.DefaultProfile != "" && !seen[c.DefaultProfile] {
		errs = append(errs, fmt.Errorf("policy: auto: default_profile %q names no profile", c.DefaultProfile))
	}
	if c.MaxQueueDepth < 0 || c.MaxQueueAge < 0 || c.MaxLatency < 0 {
		errs = append(errs, errors.New("policy: auto: max_queue_depth, max_queue_age and max_latency must not be negative"))
	}
	return errors.Join(errs...)
}

// ModelLoad is one model's load and health as the optimizer sees it.
type ModelLoad struct {
	// QueueDepth is how many of its requests wait.
	QueueDepth int
	// QueueAge is how long the oldest of them has waited.
	QueueAge time.Duration
	// LatencyP95 is its recent 95th percentile latency.
	LatencyP95 time.Duration
	// BreakerOpen reports that its circuit breaker is open.
	BreakerOpen bool
	// Unavailable reports that no worker serves it.
	Unavailable bool
}

// Selection is the value of a KindAutoModel decision.
type Selection struct {
	// Profile is the profile that matched the agent.
	Profile string `json:"profile"`
	// Model is the model to run the request on.
	Model string `json:"model"`
	// Priority is the request's priority, at most the profile's ceiling.
	Priority wire.Priority `json:"priority"`
	// NumCtx is the num_ctx to give the request; 0 leaves the model's own.
	NumCtx int `json:"num_ctx,omitempty"`
}

// SelectModel chooses the model for a "model": "auto" request from agent.
// The profile is the first whose Agents pattern matches the agent, else
// DefaultProfile. The model is the first of the profile's models whose
// breaker is closed, that is served and that is not busy (MaxQueueDepth,
// MaxQueueAge, MaxLatency); when all the usable ones are busy, the least
// loaded of them; when none is usable, the default model, so that the
// request fails fast like any request for a model whose breaker is open.
// A model missing from load counts as idle. The priority is requested,
// lowered to the profile's ceiling; an invalid requested priority counts
// as normal. If no profile applies, ErrNoProfile is returned.
func SelectModel(cfg AutoConfig, agent string, requested wire.Priority, load map[string]ModelLoad) (Decision[Selection], error) {
	p, how, ok := matchProfile(cfg, agent)
	if !ok {
		return Decision[Selection]{}, fmt.Errorf("agent %q: %w", agent, ErrNoProfile)
	}
	prio := requested
	if !prio.Valid() {
		prio = wire.Normal
	}
	if prio.Index() < p.PriorityCeiling.Index() {
		prio = p.PriorityCeiling
	}

	numbers := map[string]float64{}
	var skipped []string
	chosen, why := "", ""
	least := ""
	for _, m := range p.Models {
		l := load[m]
		numbers["queue_depth/"+m] = float64(l.QueueDepth)
		numbers["queue_age_seconds/"+m] = l.QueueAge.Seconds()
		numbers["latency_p95_seconds/"+m] = l.LatencyP95.Seconds()
		numbers["breaker_open/"+m] = b2f(l.BreakerOpen)
		if r := unusable(l); r != "" {
			skipped = append(skipped, m+" "+r)
			continue
		}
		if r := cfg.busy(l); r != "" {
			skipped = append(skipped, m+" "+r)
			if least == "" || lessLoaded(l, load[least]) {
				least = m
			}
			continue
		}
		chosen = m
		break
	}
	switch {
	case chosen != "" && len(skipped) == 0:
		why = fmt.Sprintf("%s (profile %s, %s): default model %s", agent, p.Name, how, chosen)
	case chosen != "":
		why = fmt.Sprintf("%s (profile %s, %s): %s, so %s", agent, p.Name, how, strings.Join(skipped, "; "), chosen)
	case least != "":
		chosen = least
		why = fmt.Sprintf("%s (profile %s, %s): %s, so the least loaded %s", agent, p.Name, how, strings.Join(skipped, "; "), chosen)
	default:
		chosen = p.Models[0]
		why = fmt.Sprintf("%s (profile %s, %s): %s, so the default %s fails fast", agent, p.Name, how, strings.Join(skipped, "; "), chosen)
	}
	if prio != requested {
		why += fmt.Sprintf(" at %s priority (ceiling of %s)", prio, p.Name)
	}
	return Decision[Selection]{
		Kind:    KindAutoModel,
		Model:   chosen,
		Value:   Selection{Profile: p.Name, Model: chosen, Priority: prio, NumCtx: p.NumCtx},
		Changed: true,
		Reason:  why,
		Numbers: numbers,
	}, nil
}

// matchProfile returns agent's profile and how it was found.
func matchProfile(cfg AutoConfig, agent string) (Profile, string, bool) {
	for _, p := range cfg.Profiles {
		for _, a := range p.Agents {
			if ok, _ := path.Match(a, agent); ok {
				return p, "matches " + a, true
			}
		}
	}
	for _, p := range cfg.Profiles {
		if p.Name == cfg.DefaultProfile {
			return p, "the default profile", true
		}
	}
	return Profile{}, "", false
}

// unusable says why a model cannot take requests, or "".
func unusable(l ModelLoad) string {
	switch {
	case l.BreakerOpen:
		return "has its breaker open"
	case l.Unavailable:
		return "is served by no worker"
	}
	return ""
}

// busy says why a model is too busy, or "".
func (c AutoConfig) busy(l ModelLoad) string {
	switch {
	case c.MaxQueueDepth > 0 && l.QueueDepth >= c.MaxQueueDepth:
		return fmt.Sprintf("has %d queued (limit %d)", l.QueueDepth, c.MaxQueueDepth)
	case c.MaxQueueAge > 0 && l.QueueAge >= c.MaxQueueAge:
		return fmt.Sprintf("has waited %s (limit %s)", l.QueueAge, c.MaxQueueAge)
	case c.MaxLatency > 0 && l.LatencyP95 >= c.MaxLatency:
		return fmt.Sprintf("has p95 latency %s (limit %s)", l.LatencyP95, c.MaxLatency)
	}
	return ""
}

// lessLoaded orders busy models: the shorter wait, then the shorter queue.
func lessLoaded(a, b ModelLoad) bool {
	if a.QueueAge != b.QueueAge {
		return a.QueueAge < b.QueueAge
	}
	return a.QueueDepth < b.QueueDepth
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
