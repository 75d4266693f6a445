package warm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/replay"
	"github.com/sutazai/herd/internal/testmodel"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// startRealHerd runs NATS, a dispatcher and a worker on a managed real
// Ollama serving herd-tiny until the test ends, and returns a connection.
func startRealHerd(t *testing.T) *nats.Conn {
	t.Helper()
	mc := managed.DefaultConfig()
	mc.Dir, mc.NumParallel, mc.TestModels = t.TempDir(), 2, []string{testmodel.Tiny.Name}
	inst := harness.Ollama(t, mc)
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 30 * time.Second})
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	connect := func() *nats.Conn { nc, _ := srv.Connect(t); return nc }
	run := func(f func(context.Context) error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = f(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	d, err := dispatcher.New(t.Context(), dispatcher.DefaultConfig(), connect(), log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(d.Run)
	wc := worker.DefaultConfig()
	wc.ID, wc.Slots, wc.CPUBudget, wc.PollInterval = "w1", 2, 1, 50*time.Millisecond
	wc.Models, wc.NumCtx = []string{testmodel.Tiny.Name}, map[string]int{testmodel.Tiny.Name: 2048}
	oc, err := ollama.NewClient(inst.URL(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(t.Context(), wc, connect(), oc, defs, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(w.Run)
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if len(d.Models()) == 0 {
			return errors.New("no worker registered")
		}
		return nil
	})
	return connect()
}

// TestRealWarmThenReplayHits: on the real Ollama, warming a capture adds
// an entry for each reproducible request not yet cached (one asked
// before counts as already cached, a repeat is sent once, sampled and
// streaming requests are skipped), reports Ollama's time and tokens, and
// a replay of the same capture then answers every reproducible request
// from the cache.
func TestRealWarmThenReplayHits(t *testing.T) {
	nc := startRealHerd(t)
	tiny := testmodel.Tiny.Name
	body := func(prompt, opts string) string {
		return fmt.Sprintf(`{"model":%q,"prompt":%q,"options":{"num_predict":8%s}}`, tiny, prompt, opts)
	}
	recs := []capture.Record{
		rec("alice", body("first", `,"temperature":0`)),
		rec("alice", body("second", `,"temperature":0`)),
		rec("bob", body("third", `,"temperature":0`)),
		rec("bob", body("seeded", `,"temperature":0.8,"seed":42`)),
		rec("alice", body("first", `,"temperature":0`)), // a repeat
		rec("carol", body("sampled", `,"temperature":0.8`)),
		rec("carol", `{"model":"`+tiny+`","prompt":"streamed","stream":true,"options":{"num_predict":8,"temperature":0}}`),
	}
	for i := range recs {
		recs[i].Time = time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC)
		recs[i].Model, recs[i].ID = tiny, fmt.Sprintf("cap-%d", i)
	}
	// The capture goes through a file, as `herd cache warm FILE` reads it.
	file := filepath.Join(t.TempDir(), "capture.jsonl")
	var buf bytes.Buffer
	if err := capture.WriteJSONL(&buf, recs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := replay.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// "second" is in the cache already.
	m := nats.NewMsg(wire.AskSubject(wire.Normal, "alice"))
	m.Data = recs[1].Payload()
	if r, err := nc.RequestMsg(m, time.Minute); err != nil || r.Header.Get(wire.HdrStatus) != "200" {
		t.Fatalf("ask second: %v %v", err, r)
	}

	var progress bytes.Buffer
	cfg := DefaultConfig()
	cfg.Progress = &progress
	cfg.Timeout = time.Minute
	rep, err := Run(t.Context(), nc, loaded, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	t.Logf("progress:\n%s\n%s", progress.String(), text.String())
	if rep.Sent != 4 || rep.Added != 3 || rep.Cached != 1 || len(rep.Failed) != 0 {
		t.Fatalf("sent %d, added %d, cached %d, failed %v; want 4, 3, 1, none", rep.Sent, rep.Added, rep.Cached, rep.Failed)
	}
	if rep.Skipped[SkipRepeat] != 1 || rep.Skipped[SkipNotReproducible] != 1 || rep.Skipped[SkipStreaming] != 1 {
		t.Errorf("skipped %v", rep.Skipped)
	}
	if rep.OllamaSeconds <= 0 || rep.EvalTokens < 3 || rep.PromptTokens < 3 {
		t.Errorf("cost %.3fs, %d prompt and %d generated tokens: want Ollama's figures", rep.OllamaSeconds, rep.PromptTokens, rep.EvalTokens)
	}

	// A replay of the whole capture: every reproducible request is a hit.
	rc := replay.DefaultConfig()
	rc.Speed, _ = replay.ParseSpeed("max")
	rc.Drain = time.Minute
	r, err := replay.New(nc, loaded, rc, nil)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replay: %d answered, %d hits, %d coalesced, %d misses", rr.Answered, rr.CacheHits, rr.CacheCoalesced, rr.CacheMisses)
	if rr.Answered != 7 || rr.CacheHits != 5 || rr.CacheMisses != 2 {
		t.Errorf("replay answered %d with %d hits and %d misses, want 7: 5 hits (the reproducible ones) and 2 misses (sampled, streamed)",
			rr.Answered, rr.CacheHits, rr.CacheMisses)
	}
}
