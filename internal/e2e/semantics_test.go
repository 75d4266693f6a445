package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestLedger: 5,000 requests over 3 priorities, 3 models and 30% repeated
// prompts from 50 concurrent agents; every request gets exactly one final
// reply.
func TestLedger(t *testing.T) {
	const agents, perAgent = 50, 100
	s := newStack(t, stackOpts{workers: 2, quiet: true,
		fakeOpts: []ollamatest.Option{ollamatest.WithLatency(time.Millisecond)},
		wcfg:     func(c *worker.Config) { c.Slots = 8 }})
	l := s.ledger()
	models := []string{"tiny", "small", "big"}
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for a := range agents {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(a), 7))
			for i := range perAgent {
				id := fmt.Sprintf("a%d-r%d", a, i)
				p := wire.Priorities[r.IntN(3)]
				model := models[r.IntN(3)]
				prompt := fmt.Sprintf("unique prompt %d of agent %d", i, a)
				if r.IntN(10) < 3 {
					prompt = fmt.Sprintf("popular prompt %d", r.IntN(20))
				}
				l.send(p, fmt.Sprintf("agent%d", a), id, genBody(model, prompt, `,"options":{"temperature":0}`))
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l.wait(ids, 2*time.Minute)
	// Let any late duplicate arrive before counting.
	time.Sleep(300 * time.Millisecond)
	lost, dup := l.counts(ids)
	var hits, coalesced, ok int
	for _, id := range ids {
		m := l.final(id)
		if status(m) == 200 {
			ok++
		}
		switch m.Header.Get(wire.HdrCache) {
		case wire.CacheHit:
			hits++
		case wire.CacheCoalesced:
			coalesced++
		}
	}
	t.Logf("ledger: %d sent, %d answered ok, %d lost, %d duplicated, %d cache hits, %d coalesced, %d ollama calls, %v",
		len(ids), ok, lost, dup, hits, coalesced, s.fake.Calls("generate"), time.Since(start).Round(time.Millisecond))
	if lost != 0 || dup != 0 || ok != len(ids) {
		t.Fatalf("lost %d, duplicated %d, ok %d of %d", lost, dup, ok, len(ids))
	}
	if calls := s.fake.Calls("generate"); calls >= len(ids) || hits+coalesced == 0 {
		t.Fatalf("repeated prompts were not served from cache or coalesced: %d calls, %d hits, %d coalesced", calls, hits, coalesced)
	}
}

// TestCoalescing: 16 identical concurrent requests make one Ollama call and
// 16 replies, 15 of them coalesced.
func TestCoalescing(t *testing.T) {
	s := newStack(t, stackOpts{})
	release := s.fake.Block()
	defer release()
	c := s.client()
	type res struct {
		meta *client.Meta
		resp *api.GenerateResponse
		err  error
	}
	out := make(chan res, 16)
	for range 16 {
		go func() {
			r, m, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "same question", Options: map[string]any{"temperature": 0}})
			out <- res{m, r, err}
		}()
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if s.fake.InFlight() != 1 {
			return fmt.Errorf("%d calls in flight", s.fake.InFlight())
		}
		// Held by the dispatcher in the leader's group, not merely queued:
		// a request still in the stream would arrive after the answer.
		held := s.disp.Held()
		if held != 15 {
			return fmt.Errorf("%d requests held, want 15", held)
		}
		return nil
	})
	release()
	caches := map[string]int{}
	for range 16 {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.resp.Response != "echo: same question" {
			t.Fatalf("answer %q", r.resp.Response)
		}
		caches[r.meta.Cache]++
	}
	if caches["miss"] != 1 || caches["coalesced"] != 15 {
		t.Fatalf("Herd-Cache counts = %v, want 1 miss and 15 coalesced", caches)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Fatalf("ollama generate calls = %d, want 1", n)
	}
}

// TestCache: a repeat is a hit without an Ollama call, and not after its
// TTL; a different num_ctx or seed never shares an entry.
func TestCache(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client()
	ctx := t.Context()
	req := func(opts map[string]any) *api.GenerateRequest {
		return &api.GenerateRequest{Model: "tiny", Prompt: "cache me", Options: opts}
	}
	base := map[string]any{"temperature": 0, "num_ctx": 2048}
	_, m1, err := c.Generate(ctx, req(base), client.CacheTTL(2*time.Second))
	if err != nil || m1.Cache != "miss" {
		t.Fatalf("first: %+v %v", m1, err)
	}
	_, m2, err := c.Generate(ctx, req(base))
	if err != nil || m2.Cache != "hit" {
		t.Fatalf("repeat: %+v %v", m2, err)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Fatalf("ollama calls after a hit = %d, want 1", n)
	}
	// The key follows what runs: herd sets num_ctx (runner options are
	// its own), so another num_ctx asked for is the same request; another
	// seed is not.
	if _, m, err := c.Generate(ctx, req(map[string]any{"temperature": 0, "num_ctx": 4096})); err != nil || m.Cache != "hit" {
		t.Fatalf("a num_ctx herd replaces split the cache entry: %+v %v", m, err)
	}
	if _, m, err := c.Generate(ctx, req(map[string]any{"temperature": 0, "num_ctx": 2048, "seed": 42})); err != nil || m.Cache != "miss" {
		t.Fatalf("a different seed shared a cache entry: %+v %v", m, err)
	}
	// Not reproducible (temperature > 0, no seed): never cached.
	for range 2 {
		_, m, err := c.Generate(ctx, req(map[string]any{"temperature": 0.8}))
		if err != nil || m.Cache != "miss" {
			t.Fatalf("unreproducible answer served from cache: %+v %v", m, err)
		}
	}
	// After the TTL the entry is gone.
	natstest.CheckFor(t, 10*time.Second, 250*time.Millisecond, func() error {
		_, m, err := c.Generate(ctx, req(base), client.Cache("auto"))
		if err != nil {
			return err
		}
		if m.Cache == "hit" {
			return fmt.Errorf("still a hit")
		}
		return nil
	})
}

// waitBatched waits until the dispatcher has put every request sent so far
// into HERD_BATCH: it acknowledges a request once its batch is stored
// there, and HERD_REQ is a work queue, so it is then empty.
func waitBatched(t *testing.T, s *stack) {
	t.Helper()
	_, js := s.srv.Connect(t)
	natstest.WaitEmpty(t, js, wire.StreamReq, 10*time.Second)
}

// TestPriority: with one slot and a slow backend, queued high requests are
// served before queued low ones.
func TestPriority(t *testing.T) {
	s := newStack(t, stackOpts{wcfg: func(c *worker.Config) { c.Slots = 1 }})
	s.fake.SetLatency(20 * time.Millisecond)
	release := s.fake.Block()
	l := s.ledger()
	l.send(wire.Low, "bg", "blocker", genBody("tiny", "blocker", ""))
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.fake.InFlight() != 1 {
			return fmt.Errorf("blocker not running")
		}
		return nil
	})
	var ids []string
	for i := range 8 {
		id := fmt.Sprintf("low%d", i)
		l.send(wire.Low, "bg", id, genBody("tiny", id, ""))
		ids = append(ids, id)
	}
	for i := range 8 {
		id := fmt.Sprintf("high%d", i)
		l.send(wire.High, "fg", id, genBody("tiny", id, ""))
		ids = append(ids, id)
	}
	// Let the dispatcher queue them all while the slot is held. A fixed
	// 300ms was a guess a loaded machine could miss, and a low batch
	// stored before a late high one would then run first.
	waitBatched(t, s)
	// And until the worker holds high work: it may have fetched a low
	// batch early (one batch ready behind the running one), and a slot
	// freed before the wake-up for the high batches was handled went to
	// that low batch, the only work waiting here.
	_, js := s.srv.Connect(t)
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		c, err := js.Consumer(t.Context(), wire.StreamBatch, wire.ConsumerName("tiny", wire.High))
		if err != nil {
			return err
		}
		if n := c.CachedInfo().NumAckPending; n == 0 {
			return errors.New("the worker holds no high batch yet")
		}
		return nil
	})
	release()
	l.wait(append(ids, "blocker"), 30*time.Second)
	answered := l.Answered()
	order := strings.Join(answered, " ")
	lastHigh, firstLow := -1, len(answered)
	for i, id := range answered {
		if strings.HasPrefix(id, "high") {
			lastHigh = i
		}
		if strings.HasPrefix(id, "low") && i < firstLow {
			firstLow = i
		}
	}
	if lastHigh > firstLow {
		t.Fatalf("a low request finished before a high one: %s", order)
	}
}

// TestAgeing: low is not starved by a backlog of high requests: once it
// has waited its age limit it overtakes high requests queued before it.
func TestAgeing(t *testing.T) {
	// The backlog does not depend on how fast this machine sends or how
	// many requests meet in a batch: one request per batch, and the slot
	// held until every request is queued. Before, a fast sender made
	// large batches (little work left once low had aged) and a slow one
	// no backlog at all, and low could be served after every high.
	s := newStack(t, stackOpts{
		dcfg: func(c *dispatcherConfig) { c.BatchSize = 1 },
		wcfg: func(c *worker.Config) {
			c.Slots = 1
			c.Sched.LowAgeAfter = 300 * time.Millisecond
		},
	})
	s.fake.SetLatency(10 * time.Millisecond)
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	var before []string
	for i := range 150 { // about 1.5 s of work for the one slot
		id := fmt.Sprintf("high%d", i)
		l.send(wire.High, "fg", id, genBody("tiny", id, ""))
		before = append(before, id)
	}
	l.send(wire.Low, "bg", "low", genBody("tiny", "low", ""))
	waitBatched(t, s)
	release()
	natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if l.final("low") == nil {
			return fmt.Errorf("low request still waiting")
		}
		return nil
	})
	waiting := 0
	for _, id := range before {
		if l.final(id) == nil {
			waiting++
		}
	}
	t.Logf("low answered while %d earlier high requests still waited", waiting)
	if waiting == 0 {
		t.Fatal("low was served only after every queued high request: no ageing")
	}
	l.wait(before, time.Minute)
}

// TestEmbedBatch: 8 embed requests in one batch make one /api/embed call
// and each caller gets its own vectors.
func TestEmbedBatch(t *testing.T) {
	// The batch is published when its eighth request joins it, not after
	// max_wait: with herd's 5ms the dispatcher's concurrent handlers (a
	// cache lookup each) had to add all eight within 5ms of the first,
	// which a loaded machine need not do, and the batch was split.
	s := newStack(t, stackOpts{lateDispatcher: true, dcfg: func(c *dispatcherConfig) {
		c.BatchSize, c.MaxWait = 8, time.Minute
	}})
	l := s.ledger()
	var ids []string
	for i := range 8 {
		id := fmt.Sprintf("e%d", i)
		l.send(wire.Normal, "emb", id, fmt.Appendf(nil, `{"model":"tiny","input":["text %d","more %d"]}`, i, i))
		ids = append(ids, id)
	}
	s.startDispatcher()
	l.wait(ids, 10*time.Second)
	if n := s.fake.Calls("embed"); n != 1 {
		t.Fatalf("embed calls = %d, want 1", n)
	}
	for i, id := range ids {
		m := l.final(id)
		var r api.EmbedResponse
		if err := jsonUnmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		want := [][]float32{ollamatest.Embedding(fmt.Sprintf("text %d", i)), ollamatest.Embedding(fmt.Sprintf("more %d", i))}
		if fmt.Sprint(r.Embeddings) != fmt.Sprint(want) {
			t.Fatalf("%s got %v, want its own vectors %v", id, r.Embeddings, want)
		}
		if m.Header.Get(wire.HdrBatchSize) != "8" {
			t.Fatalf("batch size header %q", m.Header.Get(wire.HdrBatchSize))
		}
	}
}

// TestBadInput: each bad request gets a clear error reply and is counted;
// nothing crashes and good requests keep flowing.
func TestBadInput(t *testing.T) {
	s := newStack(t, stackOpts{dcfg: func(c *dispatcherConfig) { c.MaxBodyBytes = 2048 }})
	l := s.ledger()
	cases := []struct {
		id, body string
		hdr      []string
		code     wire.Code
		msg      string
	}{
		{"malformed", `{"model":"tiny","prompt":`, nil, wire.CodeInvalidRequest, "not a JSON object"},
		{"unknown-op", `{"op":"dance","model":"tiny","prompt":"x"}`, nil, wire.CodeInvalidRequest, `op "dance"`},
		{"missing-model", `{"prompt":"x"}`, nil, wire.CodeInvalidRequest, "model is required"},
		{"empty-prompt", `{"model":"tiny","prompt":""}`, nil, wire.CodeInvalidRequest, "prompt is empty"},
		{"oversized", `{"model":"tiny","prompt":"` + strings.Repeat("x", 4096) + `"}`, nil, wire.CodeInvalidRequest, "limit"},
		{"expired", `{"model":"tiny","prompt":"x"}`, []string{wire.HdrDeadline, time.Now().Add(-time.Minute).Format(time.RFC3339)}, wire.CodeDeadlineExceeded, "deadline"},
		{"bad-timeout", `{"model":"tiny","prompt":"x"}`, []string{wire.HdrTimeout, "soon"}, wire.CodeInvalidRequest, "Herd-Timeout"},
		{"bad-cache", `{"model":"tiny","prompt":"x"}`, []string{wire.HdrCache, "maybe"}, wire.CodeInvalidRequest, "Herd-Cache"},
		{"unknown-model", `{"model":"nope","prompt":"x"}`, nil, wire.CodeModelNotFound, "nope"},
	}
	before := map[wire.Code]float64{}
	for _, c := range cases {
		before[c.code] = testutil.ToFloat64(mustCounter(t, s, string(c.code)))
	}
	var ids []string
	for _, c := range cases {
		l.send(wire.Normal, "bad", c.id, []byte(c.body), c.hdr...)
		ids = append(ids, c.id)
	}
	l.wait(ids, 10*time.Second)
	want := map[wire.Code]float64{}
	for _, c := range cases {
		m := l.final(c.id)
		eb := errorBody(t, m)
		if eb.Code != c.code || !strings.Contains(eb.Error, c.msg) || status(m) != c.code.Status() {
			t.Errorf("%s: status %d body %s; want %s containing %q", c.id, status(m), m.Data, c.code, c.msg)
		}
		want[c.code]++
	}
	for code, n := range want {
		if got := testutil.ToFloat64(mustCounter(t, s, string(code))) - before[code]; got != n {
			t.Errorf("rejected{code=%s} grew by %v, want %v", code, got, n)
		}
	}
	// A request with no reply subject is dead-lettered with its reason.
	_, js := s.srv.Connect(t)
	m := nats.NewMsg(wire.ReqSubject(wire.Normal, "bad"))
	m.Data = genBody("tiny", "x", "")
	m.Header.Set(wire.HdrMsgID, "noreply")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	sub, _ := js.OrderedConsumer(t.Context(), wire.StreamDLQ, orderedAll())
	dl, err := sub.Next()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dl.Headers().Get(wire.HdrReason), wire.HdrReplyTo) {
		t.Fatalf("dead letter reason %q", dl.Headers().Get(wire.HdrReason))
	}
	// And herd still answers good requests.
	c := s.client()
	if _, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "still fine"}); err != nil {
		t.Fatal(err)
	}
}

// TestCancelQueued: a canceled queued request is answered 499 and never
// reaches Ollama.
func TestCancelQueued(t *testing.T) {
	s := newStack(t, stackOpts{wcfg: func(c *worker.Config) { c.Slots = 1 }})
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	l.send(wire.Normal, "a", "running", genBody("tiny", "first", ""))
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.fake.InFlight() != 1 {
			return fmt.Errorf("first not running")
		}
		return nil
	})
	l.send(wire.Normal, "a", "queued", genBody("tiny", "second", ""))
	waitBatched(t, s) // queued: in HERD_BATCH, behind the running one
	if err := l.nc.Publish(wire.CancelSubject("a", "queued"), nil); err != nil {
		t.Fatal(err)
	}
	_ = l.nc.Flush()
	release()
	l.wait([]string{"running", "queued"}, 10*time.Second)
	m := l.final("queued")
	if eb := errorBody(t, m); eb.Code != wire.CodeCanceled || status(m) != 499 {
		t.Fatalf("canceled request answered %d %s", status(m), m.Data)
	}
	// The cancel reaches the worker asynchronously: the request either never
	// reached Ollama or its call was cut off; Ollama never finished it.
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n, c := s.fake.CallsFor("generate", "tiny"), s.fake.Canceled(); n-c != 1 {
			return fmt.Errorf("ollama calls = %d, canceled %d: the canceled request ran to its end", n, c)
		}
		return nil
	})
}

// TestCoalescedLeaderCanceled: the agent of the request that leads a group
// of identical requests cancels it; the others did not, and get the answer,
// not the leader's 499.
func TestCoalescedLeaderCanceled(t *testing.T) {
	s := newStack(t, stackOpts{})
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	body := genBody("tiny", "same question", `,"options":{"temperature":0}`)
	l.send(wire.Normal, "a", "leader", body)
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.fake.InFlight() != 1 {
			return fmt.Errorf("leader not running")
		}
		return nil
	})
	followers := []string{"f1", "f2", "f3"}
	for _, id := range followers {
		l.send(wire.Normal, "b", id, body)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if held := s.disp.Held(); held != len(followers) {
			return fmt.Errorf("%d requests held, want %d", held, len(followers))
		}
		return nil
	})
	if err := l.nc.Publish(wire.CancelSubject("a", "leader"), nil); err != nil {
		t.Fatal(err)
	}
	_ = l.nc.Flush()
	l.wait([]string{"leader"}, 10*time.Second)
	if m := l.final("leader"); status(m) != 499 {
		t.Fatalf("canceled leader answered %d %s", status(m), m.Data)
	}
	release()
	l.wait(followers, 15*time.Second)
	caches := map[string]int{}
	for _, id := range followers {
		m := l.final(id)
		if status(m) != 200 {
			t.Fatalf("follower %s answered %d %s: the leader's cancel is not its answer", id, status(m), m.Data)
		}
		caches[m.Header.Get(wire.HdrCache)]++
	}
	if caches["miss"] != 1 || caches["coalesced"] != 2 {
		t.Fatalf("followers' Herd-Cache = %v, want 1 miss (the new leader) and 2 coalesced", caches)
	}
	if lost, dup := l.counts(append([]string{"leader"}, followers...)); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}

// TestWorkerKilledMidBatch: a worker dies holding a batch; the batch is
// redelivered to another worker and every caller gets one answer.
func TestWorkerKilledMidBatch(t *testing.T) {
	s := newStack(t, stackOpts{overrides: overridesAckWait(time.Second), wcfg: func(c *worker.Config) { c.DrainTimeout = 10 * time.Millisecond }})
	release := s.fake.Block()
	l := s.ledger()
	var ids []string
	for i := range 4 {
		id := fmt.Sprintf("k%d", i)
		l.send(wire.Normal, "a", id, genBody("tiny", id, ""))
		ids = append(ids, id)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.fake.InFlight() == 0 {
			return fmt.Errorf("nothing running yet")
		}
		return nil
	})
	s.mu.Lock()
	w1 := s.workers[0]
	s.mu.Unlock()
	w1.kill()
	release()
	wc := worker.DefaultConfig()
	wc.ID = "w2"
	wc.PollInterval = 50 * time.Millisecond
	s.startWorker(wc)
	l.wait(ids, 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	if lost, dup := l.counts(ids); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
	for _, id := range ids {
		if m := l.final(id); status(m) != 200 || m.Header.Get(wire.HdrWorker) != "w2" {
			t.Fatalf("%s answered %d by %q", id, status(m), m.Header.Get(wire.HdrWorker))
		}
	}
}
