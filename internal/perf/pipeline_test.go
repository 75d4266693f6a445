package perf

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

func benchOnly(t *testing.T) {
	if os.Getenv("HERD_BENCH") == "" {
		t.Skip("performance suite: run with make bench (HERD_BENCH=1)")
	}
}

// result is one measured run.
type result struct {
	name       string
	n          int
	elapsed    time.Duration
	lat        []time.Duration
	throughput float64
}

func (r *result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	return r.lat[min(int(float64(len(r.lat))*p), len(r.lat)-1)]
}

// drive sends n requests from agents concurrent agents, each waiting for
// its answer before the next (closed loop), and measures them.
func drive(name string, n, agents int, send func(agent, i int) error) (*result, error) {
	var next atomic.Int64
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for a := range agents {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := send(a, i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return nil, e.(error)
	}
	return &result{name: name, n: n, elapsed: el, lat: lat, throughput: float64(n) / el.Seconds()}, nil
}

// replier answers requests on one connection: a map from reply subject to
// waiting caller.
type replier struct {
	prefix                  string
	queueMs, totalMs, batch atomic.Int64
	mu                      sync.Mutex
	wait                    map[string]chan struct{}
}

func newReplier(nc *nats.Conn) (*replier, error) {
	r := &replier{prefix: nc.NewRespInbox(), wait: map[string]chan struct{}{}}
	sub, err := nc.Subscribe(r.prefix+".*", func(m *nats.Msg) {
		if m.Header.Get(wire.HdrStatus) == "" && m.Header.Get("Floor") == "" {
			return
		}
		if q := m.Header.Get(wire.HdrQueueMs); q != "" {
			var a, b, c int64
			fmt.Sscan(q, &a)
			fmt.Sscan(m.Header.Get(wire.HdrTotalMs), &b)
			fmt.Sscan(m.Header.Get(wire.HdrBatchSize), &c)
			r.queueMs.Add(a)
			r.totalMs.Add(b)
			r.batch.Add(c)
		}
		r.mu.Lock()
		ch := r.wait[m.Subject]
		delete(r.wait, m.Subject)
		r.mu.Unlock()
		if ch != nil {
			close(ch)
		}
	})
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return r, nil
}

// roundTrip publishes body to subject through JetStream as request id,
// with this replier's inbox as its reply subject, and waits up to 30 s for
// the answer.
func (r *replier) roundTrip(ctx context.Context, js jetstream.JetStream, subject, id string, body []byte) error {
	m := nats.NewMsg(subject)
	m.Data = body
	reply := r.prefix + "." + id
	m.Header.Set(wire.HdrReplyTo, reply)
	ch := r.expect(reply)
	if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id)); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("request %s not answered in 30s", id)
	}
}

func (r *replier) expect(subject string) chan struct{} {
	ch := make(chan struct{})
	r.mu.Lock()
	r.wait[subject] = ch
	r.mu.Unlock()
	return ch
}

// floor measures the raw JetStream request/reply pipeline: publish to a
// work-queue stream, Fetch(16), reply, ack.
func floor(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, n, agents int) (*result, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "FLOOR", Subjects: []string{"floor.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "floor", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := cons.Fetch(16, jetstream.FetchMaxWait(100*time.Millisecond))
				if err != nil {
					continue
				}
				for m := range b.Messages() {
					out := nats.NewMsg(m.Headers().Get(wire.HdrReplyTo))
					out.Data = m.Data()
					out.Header.Set("Floor", "1")
					_ = nc.PublishMsg(out)
					_ = m.Ack()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	rep, err := newReplier(nc)
	if err != nil {
		return nil, err
	}
	body := []byte(`{"model":"tiny","prompt":"floor"}`)
	return drive("raw JetStream floor", n, agents, func(a, i int) error {
		return rep.roundTrip(ctx, js, fmt.Sprintf("floor.req.agent%d", a), fmt.Sprintf("f%d", i), body)
	})
}

// ceiling measures n calls of the instant backend made directly through
// the api package by callers concurrent callers.
func ceiling(ctx context.Context, url string, n, callers int) (*result, error) {
	c, err := ollama.NewClient(url, time.Minute)
	if err != nil {
		return nil, err
	}
	no := false
	return drive("instant backend alone", n, callers, func(_, i int) error {
		return c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: fmt.Sprintf("request %d", i), Stream: &no},
			func(api.GenerateResponse) error { return nil })
	})
}

// TestPipelineVsFloor prints herd's throughput and added latency with an
// instant backend next to the raw JetStream pipeline floor.
func TestPipelineVsFloor(t *testing.T) {
	benchOnly(t)
	const n, agents = 4000, 50
	for _, fsync := range benchSyncModes() {
		t.Run(fmt.Sprintf("sync_always=%v", fsync), func(t *testing.T) {
			cfg := embedded.DefaultConfig()
			cfg.Listen, cfg.DataDir, cfg.SyncAlways = "127.0.0.1:-1", t.TempDir(), fsync
			srv, err := embedded.Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
			conn := func() *nats.Conn {
				nc, err := nats.Connect(srv.ClientURL())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				return nc
			}
			ctx := t.Context()
			nc := conn()
			js, _ := jetstream.New(nc)
			fl, err := floor(ctx, nc, js, n, agents)
			if err != nil {
				t.Fatal(err)
			}

			defs, err := provision.Load(provision.Overrides{})
			if err != nil {
				t.Fatal(err)
			}
			if err := defs.Ensure(ctx, js); err != nil {
				t.Fatal(err)
			}
			fake := ollamatest.New(t, ollamatest.WithModels("tiny"))
			// The backend ceiling: the same instant backend called directly
			// through the api package by as many callers as the worker has
			// slots. No design that makes one api call per request can pass it.
			ceil, err := ceiling(ctx, fake.URL, n, 15)
			if err != nil {
				t.Fatal(err)
			}
			log := zap.NewNop()
			d, err := dispatcher.New(ctx, dispatcher.DefaultConfig(), conn(), log, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			wc := worker.DefaultConfig()
			wc.Slots = 16
			oc, _ := ollama.NewClient(fake.URL, time.Minute)
			w, err := worker.New(ctx, wc, conn(), oc, defs, log, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			wg.Go(func() { _ = d.Run(rctx) })
			wg.Go(func() { _ = w.Run(rctx) })
			defer func() { cancel(); wg.Wait() }()
			for len(d.Models()) == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			hnc := conn()
			hjs, _ := jetstream.New(hnc)
			rep, err := newReplier(hnc)
			if err != nil {
				t.Fatal(err)
			}
			writes0 := streamWrites(t, hjs)
			h, err := drive("herd pipeline", n, agents, func(a, i int) error {
				return rep.roundTrip(ctx, hjs, wire.ReqSubject(wire.Normal, fmt.Sprintf("agent%d", a)), fmt.Sprintf("h%d", i),
					fmt.Appendf(nil, `{"model":"tiny","prompt":"request %d"}`, i))
			})
			if err != nil {
				t.Fatal(err)
			}
			if os.Getenv("HERD_BENCH_DEBUG") != "" {
				fmt.Printf("herd stages: mean queue %.1fms, mean total %.1fms, mean batch %.1f\n", float64(rep.queueMs.Load())/n, float64(rep.totalMs.Load())/n, float64(rep.batch.Load())/n)
			}
			ratio := h.throughput / fl.throughput
			perRequest := float64(streamWrites(t, hjs)-writes0) / n
			var b strings.Builder
			fmt.Fprintf(&b, "\npipeline vs raw JetStream floor (%d requests, %d agents, instant backend, fsync every write: %v)\n", n, agents, fsync)
			fmt.Fprintf(&b, "  %-22s %10s %10s %10s\n", "", "req/s", "p50", "p99")
			for _, r := range []*result{fl, ceil, h} {
				fmt.Fprintf(&b, "  %-22s %10.0f %10v %10v\n", r.name, r.throughput, r.pct(0.5).Round(10*time.Microsecond), r.pct(0.99).Round(10*time.Microsecond))
			}
			fmt.Fprintf(&b, "  throughput ratio herd/floor: %.2f (tracked, issue 14 item 4; the floor makes 1 durable write per request)\n", ratio)
			fmt.Fprintf(&b, "  herd's durable writes per request: %.2f (HERD_REQ, HERD_BATCH per batch, herd_results, herd_cache)\n", perRequest)
			fmt.Fprintf(&b, "  throughput ratio herd/backend ceiling: %.2f (the ceiling is %.2f of the floor)\n", h.throughput/ceil.throughput, ceil.throughput/fl.throughput)
			fmt.Fprintf(&b, "  added latency over the floor: p50 %v, p99 %v\n", (h.pct(0.5) - fl.pct(0.5)).Round(10*time.Microsecond), (h.pct(0.99) - fl.pct(0.99)).Round(10*time.Microsecond))
			fmt.Print(b.String())
		})
	}
}

func benchSyncModes() []bool {
	switch os.Getenv("HERD_BENCH_SYNC") {
	case "on":
		return []bool{true}
	case "off":
		return []bool{false}
	}
	return []bool{false, true}
}

// streamWrites returns how many messages the streams on a request's path
// have stored so far (each an fsync with sync_interval always).
func streamWrites(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	var n uint64
	for _, name := range []string{wire.StreamReq, wire.StreamBatch, "KV_" + wire.BucketResults, "KV_" + wire.BucketCache} {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		n += info.State.LastSeq
	}
	return n
}
