package worker

import (
	"sync"
	"time"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/ollama"
)

// modelSettings is how this worker runs each model, as decided outside
// the configuration: the optimizer's decisions (num_ctx, keep_alive, the
// slot allocation) and each model's own defaults read from Ollama. The
// watches write it; every call reads it. It is safe for concurrent use.
type modelSettings struct {
	// mu guards every field below.
	mu sync.RWMutex
	// numCtx holds the optimizer's num_ctx decisions, which override the
	// configured windows.
	numCtx map[string]int
	// own holds each served model's own defaults (its Modelfile's, read
	// from Ollama's /api/show); ownDigest the digest they were read for,
	// so a re-pulled model is read again.
	own       map[string]ollama.ModelDefaults
	ownDigest map[string]string
	// budget is the optimizer's slot allocation (zero: none); keepAlive
	// its keep_alive decisions, which override the configured ones.
	budget    control.Budget
	keepAlive map[string]time.Duration
}

func newModelSettings() *modelSettings {
	return &modelSettings{numCtx: map[string]int{}, own: map[string]ollama.ModelDefaults{},
		ownDigest: map[string]string{}, keepAlive: map[string]time.Duration{}}
}

// window returns model's num_ctx: the optimizer's, else configured (from
// cfg), else the model's own, else 0 (Ollama's default).
func (s *modelSettings) window(model string, configured map[string]int) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n, ok := s.numCtx[model]; ok {
		return n
	}
	if n := configured[model]; n > 0 {
		return n
	}
	return s.own[model].NumCtx
}

// share returns model's share of the budget for a worker of slots slots
// and cores cores (control.Budget.Share: threads, and whether the model
// has a share), and the model's own num_thread.
func (s *modelSettings) share(model string, slots int, cores float64) (threads int, shared bool, own int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, threads, shared = s.budget.Share(model, slots, cores)
	return threads, shared, s.own[model].NumThread
}

// keepAliveOf returns the optimizer's keep_alive for model, if any.
func (s *modelSettings) keepAliveOf(model string) (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.keepAlive[model]
	return d, ok
}

// setBudget makes b the allocation.
func (s *modelSettings) setBudget(b control.Budget) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budget = b
}

// setKeepAlive records (or, when !present, forgets) model's keep_alive
// decision and reports whether it changed.
func (s *modelSettings) setKeepAlive(model string, d time.Duration, present bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.keepAlive[model]
	if !present {
		delete(s.keepAlive, model)
		return had
	}
	s.keepAlive[model] = d
	return !had || old != d
}

// setNumCtx records (or, when n <= 0, forgets) model's num_ctx decision
// and reports whether it changed.
func (s *modelSettings) setNumCtx(model string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.numCtx[model]
	if n <= 0 {
		delete(s.numCtx, model)
		return had
	}
	s.numCtx[model] = n
	return !had || old != n
}

// ownRead reports whether model's own defaults were read for digest.
func (s *modelSettings) ownRead(model, digest string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	read, ok := s.ownDigest[model]
	return ok && read == digest
}

// setOwn records model's own defaults, read for digest.
func (s *modelSettings) setOwn(model, digest string, d ollama.ModelDefaults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.own[model], s.ownDigest[model] = d, digest
}
