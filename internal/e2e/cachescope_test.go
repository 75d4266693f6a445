package e2e

import (
	"testing"
	"time"

	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
)

// TestCacheScope: with dispatcher.cache_scope global, an agent's repeat of
// another agent's reproducible request is a hit (and says so); with
// agent, each agent shares only with itself, so no agent learns what
// another asked; a profile's cache_scope overrides the default for its
// agents.
func TestCacheScope(t *testing.T) {
	body := genBody("tiny", "the same question", `,"options":{"temperature":0}`)
	run := func(t *testing.T, scope string, profile string) (alice2, bob, carol string) {
		s := newStack(t, stackOpts{dcfg: func(c *dispatcherConfig) {
			c.CacheScope = scope
			if profile != "" {
				c.Auto.Profiles = append(c.Auto.Profiles, policy.Profile{Name: "private", Agents: []string{"carol"},
					Models: []string{"tiny"}, PriorityCeiling: wire.High, CacheScope: profile})
			}
		}})
		l := s.ledger()
		l.send(wire.Normal, "alice", "a1", body)
		l.wait([]string{"a1"}, 10*time.Second)
		l.send(wire.Normal, "alice", "a2", body)
		l.send(wire.Normal, "bob", "b1", body)
		l.send(wire.Normal, "carol", "c1", body)
		l.wait([]string{"a2", "b1", "c1"}, 10*time.Second)
		cache := func(id string) string { return l.final(id).Header.Get(wire.HdrCache) }
		return cache("a2"), cache("b1"), cache("c1")
	}
	t.Run("global", func(t *testing.T) {
		a2, b, c := run(t, policy.CacheScopeGlobal, policy.CacheScopeAgent)
		if a2 != "hit" || b != "hit" {
			t.Errorf("global: alice again %q, bob %q; want both hit", a2, b)
		}
		if c != "miss" {
			t.Errorf("carol's profile keeps her answers private: got %q, want miss", c)
		}
	})
	t.Run("agent", func(t *testing.T) {
		a2, b, c := run(t, policy.CacheScopeAgent, "")
		if a2 != "hit" || b != "miss" || c != "miss" {
			t.Errorf("agent scope: alice again %q (want hit), bob %q and carol %q (want miss)", a2, b, c)
		}
	})
}
