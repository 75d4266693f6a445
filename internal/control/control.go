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
func BreakerKey(model string) string { return modelKey(BreakerPrefix, model) }

// ModelFromBreakerKey reverses BreakerKey.
func ModelFromBreakerKey(key string) (string, bool) { return modelOf(BreakerPrefix, key) }

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
func NumCtxKey(model string) string { return modelKey(NumCtxPrefix, model) }

// ModelFromNumCtxKey reverses NumCtxKey.
func ModelFromNumCtxKey(key string) (string, bool) { return modelOf(NumCtxPrefix, key) }

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

// modelKey returns prefix + the hex of model.
func modelKey(prefix, model string) string { return prefix + hex.EncodeToString([]byte(model)) }

// modelOf reverses modelKey.
func modelOf(prefix, key string) (string, bool) {
	if !strings.HasPrefix(key, prefix) {
		return "", false
	}
	b, err := hex.DecodeString(key[len(prefix):])
	return string(b), err == nil
}

// BudgetKey is the herd_control key of the fleet's slot allocation: one
// key, because the shares of one total move together.
const BudgetKey = "budget"

// Budget is the optimizer's allocation of the fleet's slots between
// models. A worker with S slots and a CPU budget of C cores runs at most
// max(1, round(Slots[m]*S/Total)) calls of model m at once, with
// num_thread max(1, floor(C*Slots[m]/Total)): the cores of the model's
// share, which its Ollama runner shares between its parallel calls.
// Models not listed are not limited.
type Budget struct {
	// Total is the fleet's slots shared (the live workers' slots).
	Total int `json:"total"`
	// Slots is each model's share of Total.
	Slots map[string]int `json:"slots"`
	// Moves are the slots moved by this decision, from one model to
	// another.
	Moves   []Move             `json:"moves,omitempty"`
	At      time.Time          `json:"at"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Move is one slot moved between models.
type Move struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Marshal encodes b.
func (b Budget) Marshal() []byte { v, _ := json.Marshal(b); return v }

// Share returns model's calls and cores on a worker of slots slots and
// cores cores under b, and false when b does not limit model.
func (b Budget) Share(model string, slots int, cores float64) (calls, threads int, ok bool) {
	n, listed := b.Slots[model]
	if !listed || b.Total <= 0 {
		return 0, 0, false
	}
	calls = max(int(float64(n*slots)/float64(b.Total)+0.5), 1)
	threads = max(int(cores*float64(n)/float64(b.Total)), 1)
	return calls, threads, true
}

// InstancesKey is the herd_control key of the recommended number of worker
// instances, for an external autoscaler.
const InstancesKey = "instances"

// Instances is the optimizer's recommended number of worker instances.
type Instances struct {
	// Recommended is the number of instances to run.
	Recommended int `json:"recommended"`
	// Running is the number of live instances the optimizer saw.
	Running int                `json:"running"`
	At      time.Time          `json:"at"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Marshal encodes n.
func (n Instances) Marshal() []byte { v, _ := json.Marshal(n); return v }

// KeepAlivePrefix starts the keys of per-model keep_alive decisions:
// keepalive.<hex of model>.
const KeepAlivePrefix = "keepalive."

// KeepAliveKey returns the herd_control key of model's keep_alive.
func KeepAliveKey(model string) string { return modelKey(KeepAlivePrefix, model) }

// ModelFromKeepAliveKey reverses KeepAliveKey.
func ModelFromKeepAliveKey(key string) (string, bool) { return modelOf(KeepAlivePrefix, key) }

// KeepAlive is how long Ollama keeps a model loaded after its last call;
// workers send it with every call of the model that sets none. Negative
// keeps the model loaded for good.
type KeepAlive struct {
	Model string `json:"model"`
	// KeepAlive is in nanoseconds in JSON (a Go duration).
	KeepAlive time.Duration      `json:"keep_alive"`
	At        time.Time          `json:"at"`
	Reason    string             `json:"reason"`
	Numbers   map[string]float64 `json:"numbers,omitempty"`
}

// Marshal encodes k.
func (k KeepAlive) Marshal() []byte { v, _ := json.Marshal(k); return v }

// UnloadPrefix starts the keys of unload decisions, one per worker (the
// memory is its Ollama host's): unload.<worker id>.
const UnloadPrefix = "unload."

// UnloadKey returns the herd_control key of worker's unload decision.
func UnloadKey(worker string) string { return UnloadPrefix + worker }

// Unload names the models a worker unloads from its Ollama now, because
// its host's memory is tight. The worker applies a decision once, and not
// when it is older than UnloadMaxAge (left from before a restart).
type Unload struct {
	Worker  string             `json:"worker"`
	Models  []string           `json:"models"`
	At      time.Time          `json:"at"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// UnloadMaxAge is how old an unload decision may be and still be applied.
const UnloadMaxAge = 30 * time.Second

// Marshal encodes u.
func (u Unload) Marshal() []byte { v, _ := json.Marshal(u); return v }

// PreloadPrefix starts the keys of preload decisions, one per worker (the
// memory is its Ollama host's): preload.<worker id>.
const PreloadPrefix = "preload."

// PreloadKey returns the herd_control key of worker's preload decision.
func PreloadKey(worker string) string { return PreloadPrefix + worker }

// Preload names the models a worker loads into its Ollama now, ahead of
// the burst of requests each is expected to get from its arrival rhythm
// (policy.PreloadByRhythm). The worker applies a decision once, and each
// model only while its burst is not yet due (a decision left from before
// a restart is not applied).
type Preload struct {
	Worker  string             `json:"worker"`
	Models  []PreloadModel     `json:"models"`
	At      time.Time          `json:"at"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// PreloadModel is one model to load.
type PreloadModel struct {
	Model string `json:"model"`
	// Due is when its next burst is expected.
	Due time.Time `json:"due"`
	// KeepAlive is the keep_alive of the loading call (nanoseconds in
	// JSON): past Due by a margin, so that a model whose keep_alive is
	// shorter than the lead is still loaded when the burst comes.
	KeepAlive time.Duration `json:"keep_alive"`
}

// Marshal encodes p.
func (p Preload) Marshal() []byte { v, _ := json.Marshal(p); return v }
