package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamaproxy"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestRerunAfterResultsTTL: a batch runs longer than queue.results_ttl (a
// 2s TTL here, on a worker with one slot; the batch's second call is
// held), its worker dies, and a second worker takes the redelivery (ack
// wait 600ms). The item answered before the TTL passed is still found in
// herd_results (the first worker kept storing it again while the batch
// ran), so it is neither run nor answered again: every id is answered
// exactly once. The first worker is killed as a crash would: its
// connection closed, its drain cut to 50ms. (After a crash nobody stores
// the outcome again: it outlives the redelivery only while results_ttl is
// well above queue.ack_wait, as it is by default.)
func TestRerunAfterResultsTTL(t *testing.T) {
	const ttl = 2 * time.Second
	fake := ollamatest.New(t, ollamatest.WithModels("tiny"))
	// Generate calls in order: the first is answered, the second held
	// until its worker dies, every later one answered.
	var calls atomic.Int32
	proxy := ollamaproxy.New(t, fake.URL, ollamaproxy.WithHook(func(_ http.ResponseWriter, r *http.Request, c *ollamaproxy.Call) bool {
		if c.Path == "/api/generate" && calls.Add(1) == 2 {
			<-r.Context().Done()
			return true
		}
		return false
	}))
	s := newStack(t, stackOpts{
		overrides: provision.Overrides{ResultsTTL: ttl, AckWait: 600 * time.Millisecond},
		ollamaURL: proxy.URL,
		wcfg:      func(c *worker.Config) { c.Slots, c.ReservedHighSlots, c.DrainTimeout = 1, 0, 50*time.Millisecond },
	})
	_, js := s.srv.Connect(t)
	l := s.ledger()
	ids := []string{"long-batch-a", "long-batch-b"}
	b := job.Batch{ID: "long-batch", Model: "tiny", Priority: wire.Normal, Created: time.Now()}
	for _, id := range ids {
		b.Items = append(b.Items, job.Item{ID: id, Reply: l.prefix + "." + id, Agent: "alice", Priority: wire.Normal,
			Op: request.OpGenerate, Model: "tiny", Body: genBody("tiny", "prompt of "+id, ""), Received: time.Now()})
	}
	data, _ := json.Marshal(b)
	if _, err := js.Publish(t.Context(), wire.BatchSubject("tiny", wire.Normal), data); err != nil {
		t.Fatal(err)
	}
	// One item answered, the other held: the batch runs on.
	var first string
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, id := range ids {
			if l.final(id) != nil {
				first = id
			}
		}
		if first == "" || calls.Load() < 2 {
			return fmt.Errorf("%d generate calls, first answer %q", calls.Load(), first)
		}
		return nil
	})
	answeredAt := time.Now()
	time.Sleep(5 * ttl / 2) // the batch outlives the TTL: the scenario
	results, err := js.KeyValue(t.Context(), wire.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	_, kept := results.Get(t.Context(), first)
	s.mu.Lock()
	w1 := s.workers[0]
	s.mu.Unlock()
	w1.kill()
	killedAt := time.Now()
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.Slots, wc.ReservedHighSlots, wc.DrainTimeout = "w2", 50*time.Millisecond, 1, 0, 50*time.Millisecond
	s.startWorker(wc)
	l.wait(ids, 30*time.Second)
	natstest.WaitEmpty(t, js, wire.StreamBatch, 20*time.Second)
	time.Sleep(300 * time.Millisecond) // a second reply would be here by now
	lost, dup := l.counts(ids)
	t.Logf("%s answered, w1 killed %v later (results TTL %v; its outcome in herd_results then: %v); w2 answered the rest %v after the kill; generate calls %d; lost %d, duplicated %d",
		first, killedAt.Sub(answeredAt).Round(time.Millisecond), ttl, kept == nil, time.Since(killedAt).Round(time.Millisecond), calls.Load(), lost, dup)
	if kept != nil {
		t.Errorf("the outcome of %s was gone from herd_results %v after it was stored, while its batch still ran: %v", first, killedAt.Sub(answeredAt).Round(time.Millisecond), kept)
	}
	if lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicated %d: want every id answered exactly once", lost, dup)
	}
	for _, id := range ids {
		if m := l.final(id); m == nil || status(m) != 200 {
			t.Errorf("%s: %v, want 200", id, m)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d generate calls, want 3 (the answered item not run again)", n)
	}
}
