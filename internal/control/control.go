// Package control defines the optimizer's decisions as they are kept in
// the herd_control bucket and read by dispatchers and workers through KV
// watches: one key per decision, JSON values that carry the reason and the
// numbers behind them.
package control

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// BreakerPrefix starts the keys of per-model breaker decisions:
// breakers.<encoded model>.
const BreakerPrefix = "breakers."

// BreakerKey returns the herd_control key of model's breaker. KV keys
// allow only A-Z a-z 0-9 - _ = . /, and model names hold more (':'), so
// the model is hex-encoded; the value names it.
func BreakerKey(model string) string { return BreakerPrefix + hex.EncodeToString([]byte(model)) }

// ModelFromBreakerKey reverses BreakerKey.
func ModelFromBreakerKey(key string) (string, bool) {
	if !strings.HasPrefix(key, BreakerPrefix) {
		return "", false
	}
	b, err := hex.DecodeString(key[len(BreakerPrefix):])
	return string(b), err == nil
}

// Breaker states.
const (
	Closed   = "closed"
	Open     = "open"
	HalfOpen = "half_open"
)

// Breaker is a model's breaker decision.
type Breaker struct {
	Model string `json:"model"`
	// State is closed, open or half_open.
	State string `json:"state"`
	// Fallback, when set, receives the model's requests while open.
	Fallback string `json:"fallback,omitempty"`
	// RetryAfter is how long callers should wait before retrying.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	At         time.Time     `json:"at"`
	Reason     string        `json:"reason"`
	// Numbers are the figures behind the decision.
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Marshal encodes b.
func (b Breaker) Marshal() []byte { v, _ := json.Marshal(b); return v }

// NumCtxPrefix starts the keys of per-model context-window decisions:
// numctx.<hex of model>.
const NumCtxPrefix = "numctx."

// NumCtxKey returns the herd_control key of model's num_ctx decision.
func NumCtxKey(model string) string { return NumCtxPrefix + hex.EncodeToString([]byte(model)) }

// ModelFromNumCtxKey reverses NumCtxKey.
func ModelFromNumCtxKey(key string) (string, bool) {
	if !strings.HasPrefix(key, NumCtxPrefix) {
		return "", false
	}
	b, err := hex.DecodeString(key[len(NumCtxPrefix):])
	return string(b), err == nil
}

// NumCtx is the context window the optimizer chose for a model; workers
// run every request of the model in it.
type NumCtx struct {
	Model   string             `json:"model"`
	NumCtx  int                `json:"num_ctx"`
	At      time.Time          `json:"at"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Marshal encodes n.
func (n NumCtx) Marshal() []byte { v, _ := json.Marshal(n); return v }
