package perf

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/embedded"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// doorStack is herd (dispatcher and worker) on an embedded server that
// fsyncs every write, with an instant fake Ollama.
type doorStack struct {
	srv  *server.Server
	fake *ollamatest.Server
	conn func() *nats.Conn
	wreg *prometheus.Registry // the worker's metrics
}

func startDoorStack(t *testing.T) *doorStack {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.SyncAlways = "127.0.0.1:-1", t.TempDir(), true
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	s := &doorStack{srv: srv}
	s.conn = func() *nats.Conn {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	ctx := t.Context()
	js, _ := jetstream.New(s.conn())
	defs, err := provision.Load(provision.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if err := defs.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	s.fake = ollamatest.New(t, ollamatest.WithModels("tiny"))
	log := zap.NewNop()
	d, err := dispatcher.New(ctx, dispatcher.DefaultConfig(), s.conn(), log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	wc := worker.DefaultConfig()
	wc.Slots = 4
	oc, _ := ollama.NewClient(s.fake.URL, time.Minute)
	s.wreg = prometheus.NewRegistry()
	w, err := worker.New(ctx, wc, s.conn(), oc, defs, log, s.wreg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(rctx) })
	wg.Go(func() { _ = w.Run(rctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for len(d.Models()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// askOnce sends one ask and checks the answer's status.
func askOnce(nc *nats.Conn, agent string, body []byte) error {
	m := nats.NewMsg(wire.AskSubject(wire.High, agent))
	m.Data = body
	r, err := nc.RequestMsg(m, 30*time.Second)
	if err != nil {
		return err
	}
	if st := r.Header.Get(wire.HdrStatus); st != "200" {
		return fmt.Errorf("status %s: %s", st, r.Data)
	}
	return nil
}

func verdict(ok bool) string { return map[bool]string{true: "met", false: "NOT met"}[ok] }

// TestLoneRequestVsFloor (issue "Performance" 1): one caller, a unique
// prompt each time (the miss path), fsync on every write, through the ask
// door, against the same instant backend called directly in the same run.
// Goal: herd adds at most 1 ms at p50.
func TestLoneRequestVsFloor(t *testing.T) {
	benchOnly(t)
	const n = 300
	s := startDoorStack(t)
	ctx := t.Context()
	oc, _ := ollama.NewClient(s.fake.URL, time.Minute)
	no := false
	direct, err := drive("direct (instant backend)", n, 1, func(_, i int) error {
		return oc.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: fmt.Sprintf("direct %d", i), Stream: &no},
			func(api.GenerateResponse) error { return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	nc := s.conn()
	// Warm up (consumers, connections), then measure.
	for i := range 20 {
		_ = askOnce(nc, "warm", fmt.Appendf(nil, `{"model":"tiny","prompt":"warm %d"}`, i))
	}
	writes := durableWrites(t, s)
	h, err := drive("herd ask door, miss", n, 1, func(_, i int) error {
		return askOnce(nc, "lone", fmt.Appendf(nil, `{"model":"tiny","prompt":"lone %d"}`, i))
	})
	if err != nil {
		t.Fatal(err)
	}
	perRequest := float64(durableWrites(t, s)-writes) / n
	added := h.pct(0.5) - direct.pct(0.5)
	var b strings.Builder
	fmt.Fprintf(&b, "\nlone request, miss path (1 caller, %d unique prompts, fsync every write, instant backend)\n", n)
	fmt.Fprintf(&b, "  %-28s %10s %10s\n", "", "p50", "p99")
	for _, r := range []*result{direct, h} {
		fmt.Fprintf(&b, "  %-28s %10v %10v\n", r.name, r.pct(0.5).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond))
	}
	fmt.Fprintf(&b, "  herd adds at p50: %v (goal <= 1ms: %s)\n", added.Round(10*time.Microsecond), verdict(added <= time.Millisecond))
	fmt.Fprintf(&b, "  durable writes per request: %.2f (HERD_REQ, HERD_BATCH, herd_results, herd_cache, each an fsync)\n", perRequest)
	b.WriteString(stageTable(t, s.wreg))
	fmt.Print(b.String())
}

// TestDoorHitVsFloor (issue "Performance" 2): cache hits answered at the
// ask door against a plain NATS service doing one KV get and a reply,
// measured in the same run. Goals: hit throughput at least half of that
// service's; hit p50 under 0.5 ms with one caller.
func TestDoorHitVsFloor(t *testing.T) {
	benchOnly(t)
	const n, callers = 4000, 64
	s := startDoorStack(t)
	ctx := t.Context()
	body := []byte(`{"model":"tiny","prompt":"a cached question","options":{"temperature":0}}`)
	nc := s.conn()
	if err := askOnce(nc, "warm", body); err != nil { // the miss that fills the cache
		t.Fatal(err)
	}
	// The floor: a NATS service answering from a KV get.
	js, _ := jetstream.New(s.conn())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "floor_kv", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", body); err != nil {
		t.Fatal(err)
	}
	svc := s.conn()
	sub, err := svc.QueueSubscribe("floor.kv", "floor", func(m *nats.Msg) {
		e, err := kv.Get(ctx, "k")
		if err != nil {
			return
		}
		_ = m.Respond(e.Value())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	conns := make([]*nats.Conn, 4)
	for i := range conns {
		conns[i] = s.conn()
	}
	floorRun := func(name string, n, callers int) (*result, error) {
		return drive(name, n, callers, func(a, _ int) error {
			_, err := conns[a%len(conns)].Request("floor.kv", nil, 10*time.Second)
			return err
		})
	}
	herdRun := func(name string, n, callers int) (*result, error) {
		return drive(name, n, callers, func(a, _ int) error { return askOnce(conns[a%len(conns)], "hits", body) })
	}
	fl1, err := floorRun("KV get + reply, 1 caller", 500, 1)
	if err != nil {
		t.Fatal(err)
	}
	h1, err := herdRun("herd hit, 1 caller", 500, 1)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := floorRun(fmt.Sprintf("KV get + reply, %d callers", callers), n, callers)
	if err != nil {
		t.Fatal(err)
	}
	h, err := herdRun(fmt.Sprintf("herd hit, %d callers", callers), n, callers)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.fake.Calls("generate"); c != 1 {
		t.Fatalf("Ollama ran %d times; every request after the first should be a hit", c)
	}
	ratio := h.throughput / fl.throughput
	var b strings.Builder
	fmt.Fprintf(&b, "\ncache hits at the ask door vs a NATS service doing one KV get and a reply (fsync on)\n")
	fmt.Fprintf(&b, "  %-30s %10s %10s %10s\n", "", "req/s", "p50", "p99")
	for _, r := range []*result{fl1, h1, fl, h} {
		fmt.Fprintf(&b, "  %-30s %10.0f %10v %10v\n", r.name, r.throughput, r.pct(0.5).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond))
	}
	fmt.Fprintf(&b, "  hit throughput / floor: %.2f (goal >= 0.50: %s)\n", ratio, verdict(ratio >= 0.5))
	fmt.Fprintf(&b, "  hit p50 with one caller: %v (goal < 0.5ms: %s)\n", h1.pct(0.5).Round(10*time.Microsecond), verdict(h1.pct(0.5) < 500*time.Microsecond))
	fmt.Print(b.String())
}

// stageTable reads herd_worker_stage_seconds from reg: the mean of each
// stage of the requests the worker answered.
func stageTable(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("  stages (mean, herd_worker_stage_seconds):")
	for _, mf := range mfs {
		if mf.GetName() != "herd_worker_stage_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			stage := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" {
					stage = l.GetValue()
				}
			}
			h := m.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			mean := time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * float64(time.Second))
			fmt.Fprintf(&b, " %s %v", stage, mean.Round(10*time.Microsecond))
		}
	}
	b.WriteString("\n")
	return b.String()
}

// durableWrites is streamWrites on the stack's server.
func durableWrites(t *testing.T, s *doorStack) uint64 {
	t.Helper()
	js, _ := jetstream.New(s.conn())
	return streamWrites(t, js)
}
