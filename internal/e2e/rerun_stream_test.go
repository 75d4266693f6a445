package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamaproxy"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestRerunStreamNotSpliced: a streaming request (temperature 0.8) whose
// worker dies mid-stream, after the caller got chunks and after
// queue.results_ttl (2s) has passed, runs again on a second worker, where
// Ollama samples a different text. The caller's chunks never start again
// (Herd-Seq strictly increasing from 0, no chunk of the second sample) and
// the stream ends once: a 503 backend_unavailable, retryable, or an answer
// whose text is exactly the chunks'. Never the second sample spliced on.
func TestRerunStreamNotSpliced(t *testing.T) {
	const ttl = 2 * time.Second
	fake := ollamatest.New(t, ollamatest.WithModels("tiny"))
	// Ollama as it samples at temperature 0.8: every run of the prompt
	// streams its own words. The first run streams until its worker is
	// gone; later ones finish after five words.
	var runs atomic.Int32
	proxy := ollamaproxy.New(t, fake.URL, ollamaproxy.WithHook(func(w http.ResponseWriter, r *http.Request, c *ollamaproxy.Call) bool {
		if c.Path != "/api/generate" || !c.Has("a story sampled anew") {
			return false
		}
		run := runs.Add(1)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for i := 0; run == 1 || i < 5; i++ {
			b, _ := json.Marshal(api.GenerateResponse{Model: "tiny", Response: fmt.Sprintf("run%d-word%d ", run, i)})
			if _, err := w.Write(append(b, '\n')); err != nil || rc.Flush() != nil {
				return true
			}
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(50 * time.Millisecond):
			}
		}
		b, _ := json.Marshal(api.GenerateResponse{Model: "tiny", Done: true, DoneReason: "stop"})
		_, _ = w.Write(append(b, '\n'))
		return true
	}))
	s := newStack(t, stackOpts{
		overrides: provision.Overrides{ResultsTTL: ttl, AckWait: 600 * time.Millisecond},
		ollamaURL: proxy.URL,
		wcfg:      func(c *worker.Config) { c.DrainTimeout = 50 * time.Millisecond },
	})
	nc, js := s.srv.Connect(t)
	inbox := nc.NewRespInbox()
	var (
		mu     sync.Mutex
		chunks []*nats.Msg
		finals []*nats.Msg
	)
	sub, err := nc.Subscribe(inbox, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if m.Header.Get(wire.HdrStatus) == "" {
			chunks = append(chunks, m)
		} else {
			finals = append(finals, m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req := nats.NewMsg(wire.ReqSubject(wire.High, "alice"))
	req.Data = genBody("tiny", "a story sampled anew", `,"stream":true,"options":{"temperature":0.8}`)
	req.Header.Set(wire.HdrMsgID, "alice=stream-1")
	req.Header.Set(wire.HdrReplyTo, inbox)
	if _, err := js.PublishMsg(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	got := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(chunks), len(finals)
	}
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n, _ := got(); n < 3 {
			return fmt.Errorf("%d chunks", n)
		}
		return nil
	})
	time.Sleep(5 * ttl / 4) // the stream outlives the results TTL: the scenario
	s.mu.Lock()
	w1 := s.workers[0]
	s.mu.Unlock()
	w1.nc.Close() // a crash: nothing more leaves it
	w1.cancel()
	before, _ := got()
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.DrainTimeout = "w2", 50*time.Millisecond, 50*time.Millisecond
	s.startWorker(wc)
	natstest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if _, n := got(); n == 0 {
			return fmt.Errorf("no final reply")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // a second final, or late chunks, would be here by now
	mu.Lock()
	defer mu.Unlock()
	var text strings.Builder
	var seqs []int
	for _, m := range chunks {
		seq, _ := strconv.Atoi(m.Header.Get(wire.HdrSeq))
		seqs = append(seqs, seq)
		var r api.GenerateResponse
		_ = json.Unmarshal(m.Data, &r)
		text.WriteString(r.Response)
	}
	final := finals[0]
	t.Logf("%d chunks before the kill, %d in all, Herd-Seq %v; %d Ollama runs; final %s %s",
		before, len(chunks), seqs, runs.Load(), final.Header.Get(wire.HdrStatus), final.Data)
	for i, seq := range seqs {
		if seq != i {
			t.Errorf("chunk %d has Herd-Seq %d: the stream started again (%v)", i, seq, seqs)
			break
		}
	}
	if strings.Contains(text.String(), "run2-") {
		t.Errorf("the caller's chunks splice a second sample onto the first: %q", text.String())
	}
	if len(finals) != 1 {
		t.Errorf("%d final replies, want 1", len(finals))
	}
	switch status(final) {
	case http.StatusOK:
		var r api.GenerateResponse
		_ = json.Unmarshal(final.Data, &r)
		if r.Response != "" && r.Response != text.String() {
			t.Errorf("answered 200 with %q after chunks %q", r.Response, text.String())
		}
	case http.StatusServiceUnavailable:
		if eb := errorBody(t, final); eb.Code != wire.CodeBackendUnavailable || !eb.Retryable {
			t.Errorf("final %s, want backend_unavailable, retryable", final.Data)
		}
	default:
		t.Errorf("final %d %s, want 503 backend_unavailable or the resumed answer", status(final), final.Data)
	}
}
