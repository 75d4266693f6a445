package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestOrphanedBatchEnds: batches published while a worker served their
// model, left in HERD_BATCH when that worker went away for good (one
// fetched and running, one still waiting), end: 504 for a request whose
// deadline passed, 404 naming the missing worker for the others, once no
// live worker has served the model for queue.no_worker_wait. None waits
// for ever.
func TestOrphanedBatchEnds(t *testing.T) {
	s := newStack(t, stackOpts{
		overrides: provision.Overrides{AckWait: time.Second},
		dcfg: func(c *dispatcherConfig) {
			c.NoWorkerWait, c.WorkerStaleAfter = 2*time.Second, time.Second
		},
		wcfg: func(c *worker.Config) {
			c.Slots, c.ReservedHighSlots, c.Heartbeat, c.DrainTimeout = 1, 0, 200*time.Millisecond, 100*time.Millisecond
		},
	})
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	l.send(wire.Normal, "alice", "running", genBody("tiny", "held in Ollama", ""))
	l.send(wire.Normal, "alice", "waiting", genBody("tiny", "waits for a slot", ""))
	l.send(wire.Normal, "alice", "late", genBody("tiny", "waits past its deadline", ""), wire.HdrTimeout, "3s")
	waitBatched(t, s)
	s.mu.Lock()
	w := s.workers[0]
	s.mu.Unlock()
	w.kill() // for good
	start := time.Now()
	l.wait([]string{"running", "waiting", "late"}, 30*time.Second)
	for _, id := range []string{"running", "waiting"} {
		m := l.final(id)
		if eb := errorBody(t, m); status(m) != 404 || !strings.Contains(eb.Error, "no worker") {
			t.Errorf("%s: %d %s, want 404 naming the missing worker", id, status(m), m.Data)
		}
	}
	if m := l.final("late"); status(m) != 504 {
		t.Errorf("late: %d %s, want 504", status(m), m.Data)
	}
	t.Logf("all three ended %v after the worker went away", time.Since(start).Round(100*time.Millisecond))
	if n := streamMsgs(t, s, wire.StreamBatch); n != 0 {
		t.Errorf("%d batches left in HERD_BATCH", n)
	}
	time.Sleep(300 * time.Millisecond)
	if lost, dup := l.counts([]string{"running", "waiting", "late"}); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}
