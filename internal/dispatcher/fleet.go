package dispatcher

import (
	"sync"
	"time"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/registry"
)

// fleetView is what a dispatcher knows of the fleet from herd_control: the
// workers' registrations (the models they serve, their digests and
// windows) and the optimizer's breaker decisions. The watches write it;
// admission reads it. It is safe for concurrent use.
type fleetView struct {
	staleAfter time.Duration // a registration older than this no longer counts

	// mu guards workers and breakers.
	mu       sync.RWMutex
	workers  *registry.Index
	breakers map[string]control.Breaker // by model; closed ones are not kept
}

func newFleetView(staleAfter time.Duration) *fleetView {
	return &fleetView{staleAfter: staleAfter, workers: registry.NewIndex(), breakers: map[string]control.Breaker{}}
}

// lookup returns model's digest and whether a live worker serves it, and
// whether any worker is live at all, at now.
func (f *fleetView) lookup(model string, now time.Time) (digest string, served, anyLive bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.workers.Lookup(model, now, f.staleAfter)
}

// window returns the num_ctx live workers run model in (0: unknown).
func (f *fleetView) window(model string, now time.Time) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.workers.Window(model, now, f.staleAfter)
}

// models returns the models live workers serve, with their digests.
func (f *fleetView) models(now time.Time) map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.workers.Models(now, f.staleAfter)
}

// putWorker records a worker's registration; deleteWorker forgets it.
func (f *fleetView) putWorker(r registry.Registration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workers.Put(r)
}

func (f *fleetView) deleteWorker(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workers.Delete(id)
}

// setBreaker records model's breaker decision (a closed one is forgotten).
func (f *fleetView) setBreaker(model string, b control.Breaker, present bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !present || b.State == control.Closed {
		delete(f.breakers, model)
		return
	}
	f.breakers[model] = b
}

// openBreaker returns model's breaker when it is open.
func (f *fleetView) openBreaker(model string) (control.Breaker, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, ok := f.breakers[model]
	return b, ok && b.State == control.Open
}
