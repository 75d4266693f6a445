package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

// DefaultListen is where `herd up` serves the HTTP doors: not Ollama's
// 11434 (an Ollama may run next to herd) nor herd's metrics port 8080.
const DefaultListen = "127.0.0.1:8090"

// Config configures the HTTP doors.
type Config struct {
	// Listen is host:port of the HTTP doors; empty serves none.
	// Default 127.0.0.1:8090.
	Listen string `koanf:"listen"`
	// Agent is the agent of a request that names none (no X-Herd-Agent
	// header, no API key). Default "http".
	Agent string `koanf:"agent"`
	// Priority is the priority of a request that names none
	// (X-Herd-Priority). Default normal.
	Priority string `koanf:"priority"`
	// Timeout is the longest the gateway waits for an answer; the caller
	// then gets 504 (the request goes on when it has an Idempotency-Key, so
	// a retry finds its outcome). 0 waits as long as the caller stays.
	// Default 10m.
	Timeout time.Duration `koanf:"timeout"`
	// Keys are API keys held in environment variables: each entry names
	// the variable, the agent the key acts as and its priority ceiling.
	// With any key configured (here or in KeysFile), a request without a
	// valid `Authorization: Bearer <key>` is answered 401. Default none.
	Keys []KeyConfig `koanf:"keys"`
	// KeysFile is a file of API keys, one per line: `<key> <agent>
	// [<priority ceiling>]`; '#' starts a comment. Keep it out of the
	// repository. Default empty: none.
	KeysFile string `koanf:"keys_file"`
}

// KeyConfig is one API key held in an environment variable.
type KeyConfig struct {
	// Env names the environment variable that holds the key. An unset or
	// empty variable is an error (a key that was meant to exist).
	Env string `koanf:"env"`
	// Agent is the agent the key's requests act as.
	Agent string `koanf:"agent"`
	// Priority is the highest priority the key may ask for; a higher one
	// is lowered to it. Default high.
	Priority string `koanf:"priority"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Listen: DefaultListen, Agent: "http", Priority: string(wire.Normal), Timeout: 10 * time.Minute, Keys: []KeyConfig{}}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q must be host:port: %w", c.Listen, err))
		}
	}
	if !wire.ValidToken(c.Agent) {
		errs = append(errs, fmt.Errorf("agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", c.Agent))
	}
	if !wire.Priority(c.Priority).Valid() {
		errs = append(errs, fmt.Errorf("priority %q must be high, normal or low", c.Priority))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	for i, k := range c.Keys {
		if k.Env == "" {
			errs = append(errs, fmt.Errorf("keys[%d].env is required", i))
		}
		if !wire.ValidToken(k.Agent) {
			errs = append(errs, fmt.Errorf("keys[%d].agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", i, k.Agent))
		}
		if k.Priority != "" && !wire.Priority(k.Priority).Valid() {
			errs = append(errs, fmt.Errorf("keys[%d].priority %q must be high, normal or low", i, k.Priority))
		}
	}
	return errors.Join(errs...)
}
