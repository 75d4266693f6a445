package worker

import (
	"context"
	"sync"
	"time"

	"github.com/sutazai/herd/internal/job"
)

// calls is what this worker is running: each running request's call (for
// its agent's cancel), which batch run answers each request (so a copy of
// a request redelivered in another batch is not run twice), and streaming
// callers whose chunks find no reader (gone.go). It is safe for concurrent
// use.
type calls struct {
	// mu guards every field below.
	mu      sync.Mutex
	running map[string]runningCall // request id -> its call
	owners  map[string]*batchRun   // request id -> the run that answers it here
	// gone tracks streaming callers whose chunks find no subscriber;
	// reconnects is the connection's reconnect count last seen there and
	// reconnectedAt when it was seen to change.
	gone          map[string]goneSpan
	reconnects    uint64
	reconnectedAt time.Time
}

// runningCall is a request whose Ollama call runs here.
type runningCall struct {
	agent  string
	cancel context.CancelFunc
}

func newCalls() *calls {
	return &calls{running: map[string]runningCall{}, owners: map[string]*batchRun{}, gone: map[string]goneSpan{}}
}

// start records items as running under cancel; the function it returns
// removes them.
func (c *calls) start(items []job.Item, cancel context.CancelFunc) (end func()) {
	c.mu.Lock()
	for _, it := range items {
		c.running[it.ID] = runningCall{agent: it.Agent, cancel: cancel}
	}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, it := range items {
			delete(c.running, it.ID)
		}
	}
}

// call returns request id's running call, if any.
func (c *calls) call(id string) (runningCall, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rc, ok := c.running[id]
	return rc, ok
}

// own makes br the run that answers request id, and reports false when
// another run already does.
func (c *calls) own(id string, br *batchRun) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.owners[id]; ok && o != br {
		return false
	}
	c.owners[id] = br
	return true
}

// disown ends br's claim on id (answered, or handed back).
func (c *calls) disown(id string, br *batchRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owners[id] == br {
		delete(c.owners, id)
	}
}

// noReader records, at now, that a chunk of request id found no reader,
// with the connection's reconnect count. It returns the call to cancel
// once its caller has had no reader for goneAfter (and when the spell
// began), and false while it is not gone yet, the call does not run here,
// or the connection itself reconnected within goneAfter (its agents are
// reconnecting too).
func (c *calls) noReader(id string, now time.Time, reconnects uint64, goneAfter time.Duration) (rc runningCall, since time.Time, gone bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reconnects != c.reconnects {
		c.reconnects, c.reconnectedAt = reconnects, now
	}
	if now.Sub(c.reconnectedAt) < goneAfter {
		delete(c.gone, id)
		return runningCall{}, time.Time{}, false
	}
	for other := range c.gone {
		if _, ok := c.running[other]; !ok {
			delete(c.gone, other)
		}
	}
	rc, ok := c.running[id]
	if !ok {
		return runningCall{}, time.Time{}, false
	}
	sp, ok := c.gone[id]
	if !ok || now.Sub(sp.last) > goneAfter {
		sp.first = now // a new spell without a reader
	}
	sp.last = now
	c.gone[id] = sp
	if now.Sub(sp.first) < goneAfter {
		return runningCall{}, time.Time{}, false
	}
	delete(c.gone, id)
	return rc, sp.first, true
}
