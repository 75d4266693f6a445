package replay

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

// Filter selects the records to replay. A record passes when, for every
// key that has values, it matches one of them (OR within a key, AND
// across keys); the zero Filter passes everything. Values are shell
// patterns (path.Match): "planner-*" matches every planner agent.
type Filter struct {
	Agents     []string `json:"agents,omitempty"`
	Priorities []string `json:"priorities,omitempty"`
	Models     []string `json:"models,omitempty"`
	Ops        []string `json:"ops,omitempty"`
}

// ParseFilter reads --filter terms such as "agent=a,priority=high",
// "model=llama3*" or "op=embed"; keys may repeat, within a term and across
// terms (the syntax herd capture export shares). It returns an error
// wrapping ErrBadFilter for an unknown key, an empty value, a malformed
// pattern or a priority that is not high, normal or low.
func ParseFilter(terms []string) (Filter, error) {
	var f Filter
	for _, term := range terms {
		for kv := range strings.SplitSeq(term, ",") {
			kv = strings.TrimSpace(kv)
			if kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || v == "" {
				return Filter{}, fmt.Errorf("%w: %q is not key=value", ErrBadFilter, kv)
			}
			if _, err := path.Match(v, ""); err != nil {
				return Filter{}, fmt.Errorf("%w: %q is not a value or pattern", ErrBadFilter, v)
			}
			switch k {
			case "agent":
				f.Agents = append(f.Agents, v)
			case "priority":
				if !strings.ContainsAny(v, "*?[") && !wire.Priority(v).Valid() {
					return Filter{}, fmt.Errorf("%w: priority %q is not high, normal or low", ErrBadFilter, v)
				}
				f.Priorities = append(f.Priorities, v)
			case "model":
				f.Models = append(f.Models, v)
			case "op":
				f.Ops = append(f.Ops, v)
			default:
				return Filter{}, fmt.Errorf("%w: key %q is not agent, priority, model or op", ErrBadFilter, k)
			}
		}
	}
	return f, nil
}

// Match reports whether r passes the filter.
func (f Filter) Match(r *capture.Record) bool {
	return matchAny(f.Agents, r.Agent) && matchAny(f.Priorities, string(r.Priority)) &&
		matchAny(f.Models, r.Model) && matchAny(f.Ops, r.Op)
}

// matchAny reports whether s matches one of patterns, or patterns is empty.
func matchAny(patterns []string, s string) bool {
	return len(patterns) == 0 || slices.ContainsFunc(patterns, func(p string) bool {
		ok, _ := path.Match(p, s)
		return ok
	})
}

// String returns the filter in --filter syntax, "" for the zero Filter.
func (f Filter) String() string {
	var parts []string
	for _, kv := range []struct {
		key  string
		vals []string
	}{{"agent", f.Agents}, {"priority", f.Priorities}, {"model", f.Models}, {"op", f.Ops}} {
		for _, v := range kv.vals {
			parts = append(parts, kv.key+"="+v)
		}
	}
	return strings.Join(parts, ",")
}
