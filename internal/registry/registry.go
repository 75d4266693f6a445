// Package registry is how workers announce themselves in herd_control
// (key workers.<id>) and how dispatchers read it: which models are served,
// with which digest, by whom.
package registry

import (
	"encoding/json"
	"time"
)

// KeyPrefix is the herd_control key prefix of worker registrations.
const KeyPrefix = "workers."

// Registration is what a worker writes under workers.<id> every heartbeat.
type Registration struct {
	ID string `json:"id"`
	// Models maps each model the worker serves to its digest.
	Models map[string]string `json:"models"`
	// Windows maps each served model to the num_ctx the worker runs it in
	// (0 or absent: Ollama's default): part of what a cached answer was
	// computed with.
	Windows   map[string]int `json:"windows,omitempty"`
	Slots     int            `json:"slots"`
	CPUBudget float64        `json:"cpu_budget"`
	At        time.Time      `json:"at"`
}

// Key returns the herd_control key of worker id.
func Key(id string) string { return KeyPrefix + id }

// Marshal encodes r.
func (r Registration) Marshal() []byte { b, _ := json.Marshal(r); return b }

// Index is the set of live registrations. It is not safe for concurrent use.
type Index struct {
	regs map[string]Registration
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{regs: map[string]Registration{}} }

// Put records a registration, Delete forgets a worker.
func (x *Index) Put(r Registration) { x.regs[r.ID] = r }

// Delete forgets worker id.
func (x *Index) Delete(id string) { delete(x.regs, id) }

// Lookup reports whether any worker registered within staleAfter of now
// serves model, its digest, and whether any live worker exists at all
// (when none does, a model cannot be judged unknown).
func (x *Index) Lookup(model string, now time.Time, staleAfter time.Duration) (digest string, served, anyLive bool) {
	for _, r := range x.regs {
		if now.Sub(r.At) > staleAfter {
			continue
		}
		anyLive = true
		if d, ok := r.Models[model]; ok {
			return d, true, true
		}
	}
	return "", false, anyLive
}

// Window returns the num_ctx live workers run model in (the largest, if
// they differ for a moment while a decision reaches them), 0 when unknown.
func (x *Index) Window(model string, now time.Time, staleAfter time.Duration) int {
	n := 0
	for _, r := range x.regs {
		if now.Sub(r.At) <= staleAfter && r.Windows[model] > n {
			n = r.Windows[model]
		}
	}
	return n
}

// Models returns every model served by a worker registered within
// staleAfter of now, with its digest.
func (x *Index) Models(now time.Time, staleAfter time.Duration) map[string]string {
	out := map[string]string{}
	for _, r := range x.regs {
		if now.Sub(r.At) > staleAfter {
			continue
		}
		for m, d := range r.Models {
			out[m] = d
		}
	}
	return out
}
