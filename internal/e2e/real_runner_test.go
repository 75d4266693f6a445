package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestRealRunnerOptionsNoReload: requests that set an option of Ollama's
// shared runner (num_thread, num_gpu, num_batch, use_mlock, use_mmap, a
// num_ctx for a model without a window in herd's configuration) or
// keep_alive 0 are answered without reloading or unloading herd-tiny: the
// model is loaded once, by the first request. Each answer's load_duration
// (Ollama's time to have the runner ready) stays far below that first
// load's, and /api/ps still lists the model at the end.
func TestRealRunnerOptionsNoReload(t *testing.T) {
	inst := startRealOllama(t, managed.Config{TestModels: []string{tinyModel}})
	// No window for herd-tiny: the num_ctx case is the one of a model
	// that is not in models[].
	s := newStack(t, realStackOpts(inst.URL(), func(c *worker.Config) { c.NumCtx = nil }))
	c := s.client()
	ask := func(body string) *api.GenerateResponse {
		t.Helper()
		raw, _, err := c.Raw(t.Context(), []byte(body), client.Cache(wire.CacheOff))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var r api.GenerateResponse
		if err := json.Unmarshal(raw, &r); err != nil || !r.Done {
			t.Fatalf("%s: answer %s: %v", body, raw, err)
		}
		return &r
	}
	first := ask(fmt.Sprintf(`{"model":%q,"prompt":"load it","options":{"num_predict":4}}`, tinyModel))
	load := first.LoadDuration
	t.Logf("first request (loads herd-tiny): load_duration %v", ms(load))
	if load < 50*time.Millisecond {
		t.Fatalf("the first request's load_duration is %v: it did not load the model, so reloads cannot be told apart", load)
	}
	var reloads []string
	for _, set := range []string{
		`"options":{"num_predict":4,"num_thread":2}`,
		`"options":{"num_predict":4,"num_gpu":0}`,
		`"options":{"num_predict":4,"num_batch":64}`,
		`"options":{"num_predict":4,"use_mlock":true}`,
		`"options":{"num_predict":4,"use_mmap":false}`,
		`"options":{"num_predict":4,"num_ctx":4096}`,
		`"options":{"num_predict":4},"keep_alive":0`,
		`"options":{"num_predict":4}`, // after keep_alive 0: still loaded
	} {
		r := ask(fmt.Sprintf(`{"model":%q,"prompt":%q,%s}`, tinyModel, "set "+set, set))
		t.Logf("%s: load_duration %v", set, ms(r.LoadDuration))
		if r.LoadDuration > load/3 {
			reloads = append(reloads, fmt.Sprintf("%s (load_duration %v)", set, ms(r.LoadDuration)))
		}
	}
	if len(reloads) > 0 {
		t.Errorf("herd-tiny was loaded again (first load %v) by requests that set %v", ms(load), reloads)
	}
	ps, err := directClient(t, inst.URL()).ListRunning(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ps.Models, func(m api.ProcessModelResponse) bool { return strings.TrimSuffix(m.Name, ":latest") == tinyModel }) {
		t.Errorf("/api/ps lists %+v: herd-tiny was unloaded", ps.Models)
	}
}

// TestRealMaxPredict: a request without num_predict on herd-tiny (which
// rarely emits an end token) stops at the model's cap, and the answer's
// done_reason is Ollama's.
func TestRealMaxPredict(t *testing.T) {
	inst := startRealOllama(t, managed.Config{TestModels: []string{tinyModel}})
	opts := realStackOpts(inst.URL(), nil)
	opts.dcfg = func(c *dispatcherConfig) { c.MaxPredict = 12 }
	s := newStack(t, opts)
	r, _, err := s.client().Generate(t.Context(), &api.GenerateRequest{Model: tinyModel, Prompt: "tell me everything"}, client.Cache(wire.CacheOff))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("answer: %d tokens, done_reason %q", r.EvalCount, r.DoneReason)
	if r.EvalCount > 12 || (r.EvalCount == 12 && r.DoneReason != "length") || (r.EvalCount < 12 && r.DoneReason != "stop") {
		t.Errorf("answer of %d tokens, done_reason %q: want at most the cap of 12, with Ollama's done_reason (length at the cap)", r.EvalCount, r.DoneReason)
	}
}
