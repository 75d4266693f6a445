package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/sutazai/herd/internal/wire"
)

// Key is what an API key grants: the agent its requests act as and the
// highest priority they may have.
type Key struct {
	Agent   string
	Ceiling wire.Priority
}

// Keys maps API keys to what they grant. The zero value (no keys) lets
// every request in, unless Require made keys required. Keys are held by
// their SHA-256, so a lookup's time says nothing about how much of a guess
// matched.
type Keys struct {
	byHash   map[[32]byte]Key
	required bool
}

// Enabled reports whether a key is required: any key is configured, or
// Require was called.
func (k Keys) Enabled() bool { return len(k.byHash) > 0 || k.required }

// Require returns k with a key required even when none is configured
// (then every request but GET / and /api/version is 401): a gateway under
// NATS access control, whose user may act only as its keys' agents.
func (k Keys) Require() Keys {
	k.required = true
	return k
}

// Agents returns the agents the keys act as, sorted, each once: those the
// gateway's NATS user must be allowed to act as (auth.GatewayRole).
func (k Keys) Agents() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range k.byHash {
		if !seen[g.Agent] {
			seen[g.Agent] = true
			out = append(out, g.Agent)
		}
	}
	sort.Strings(out)
	return out
}

// Lookup returns what key grants; ok is false for an unknown key.
func (k Keys) Lookup(key string) (Key, bool) {
	g, ok := k.byHash[sha256.Sum256([]byte(key))]
	return g, ok
}

func (k *Keys) add(key string, g Key) error {
	if key == "" {
		return fmt.Errorf("%w: empty key for agent %q", ErrBadKeys, g.Agent)
	}
	if !wire.ValidToken(g.Agent) {
		return fmt.Errorf("%w: agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", ErrBadKeys, g.Agent)
	}
	if g.Ceiling == "" {
		g.Ceiling = wire.High
	}
	if !g.Ceiling.Valid() {
		return fmt.Errorf("%w: priority %q for agent %q must be high, normal or low", ErrBadKeys, g.Ceiling, g.Agent)
	}
	if k.byHash == nil {
		k.byHash = map[[32]byte]Key{}
	}
	h := sha256.Sum256([]byte(key))
	if _, dup := k.byHash[h]; dup {
		return fmt.Errorf("%w: a key for agent %q is given twice", ErrBadKeys, g.Agent)
	}
	k.byHash[h] = g
	return nil
}

// ParseKeys reads a keys file: one key per line, `<key> <agent>
// [<priority ceiling>]` separated by spaces or tabs; blank lines and
// lines starting with '#' are skipped. Errors name the line (never the
// key) and wrap ErrBadKeys.
func ParseKeys(r io.Reader) (Keys, error) {
	var k Keys
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return Keys{}, fmt.Errorf("%w: line %d: want <key> <agent> [<priority>]", ErrBadKeys, n)
		}
		g := Key{Agent: f[1]}
		if len(f) == 3 {
			g.Ceiling = wire.Priority(f[2])
		}
		if err := k.add(f[0], g); err != nil {
			return Keys{}, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return Keys{}, fmt.Errorf("%w: %w", ErrBadKeys, err)
	}
	return k, nil
}

// LoadKeys returns the keys c configures: KeysFile read with readFile,
// then each Keys entry's variable read with getenv.
func LoadKeys(c Config, getenv func(string) string, readFile func(string) ([]byte, error)) (Keys, error) {
	var k Keys
	if c.KeysFile != "" {
		b, err := readFile(c.KeysFile)
		if err != nil {
			return Keys{}, fmt.Errorf("%w: read %s: %w", ErrBadKeys, c.KeysFile, err)
		}
		if k, err = ParseKeys(bytes.NewReader(b)); err != nil {
			return Keys{}, fmt.Errorf("%s: %w", c.KeysFile, err)
		}
	}
	for _, e := range c.Keys {
		v := strings.TrimSpace(getenv(e.Env))
		if v == "" {
			return Keys{}, fmt.Errorf("%w: environment variable %s (agent %q) is unset or empty", ErrBadKeys, e.Env, e.Agent)
		}
		if err := k.add(v, Key{Agent: e.Agent, Ceiling: wire.Priority(e.Priority)}); err != nil {
			return Keys{}, fmt.Errorf("%s: %w", e.Env, err)
		}
	}
	return k, nil
}
