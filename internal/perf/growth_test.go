package perf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// Growth settings. The backlog table needs HERD_REQ to hold its largest
// row, so the stack raises max_msgs above it.
const (
	growthRequests   = 3000 // requests per concurrent-agents row
	growthMaxQueued  = 200000
	growthPubWindow  = 4096 // async publishes in flight
	growthSlots      = 16
	growthSampleStep = 250 * time.Millisecond
	growthDrainLimit = 5 * time.Minute
)

// growthStack is one herd inside the test process: an embedded NATS server
// with fsync off, the definitions provisioned with room for the largest
// backlog, the instant fake Ollama, and a worker and dispatcher started on
// demand. Everything stops in the subtest's cleanup, in reverse order.
type growthStack struct {
	t    *testing.T
	url  string
	fake string
	defs *provision.Definitions
}

func newGrowthStack(t *testing.T) *growthStack {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.SyncAlways = "127.0.0.1:-1", t.TempDir(), false
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	s := &growthStack{t: t, url: srv.ClientURL()}
	defs, err := provision.Load(provision.Overrides{MaxRequests: growthMaxQueued})
	if err != nil {
		t.Fatal(err)
	}
	_, js := s.conn()
	if err := defs.Ensure(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	s.defs = defs
	s.fake = ollamatest.New(t, ollamatest.WithModels("tiny")).URL
	return s
}

func (s *growthStack) conn(opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := nats.Connect(s.url)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return nc, js
}

// run starts f and registers its stop (cancel, then wait) with the cleanup.
func (s *growthStack) run(f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(s.t.Context()))
	done := make(chan struct{})
	go func() { defer close(done); _ = f(ctx) }()
	s.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			s.t.Error("component did not stop within a minute")
		}
	})
}

func (s *growthStack) startWorker() {
	s.t.Helper()
	wc := worker.DefaultConfig()
	wc.Slots = growthSlots
	oc, err := ollama.NewClient(s.fake, time.Minute)
	if err != nil {
		s.t.Fatal(err)
	}
	nc, _ := s.conn()
	w, err := worker.New(s.t.Context(), wc, nc, oc, s.defs, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		s.t.Fatal(err)
	}
	s.run(w.Run)
}

func (s *growthStack) startDispatcher() *dispatcher.Dispatcher {
	s.t.Helper()
	nc, _ := s.conn()
	d, err := dispatcher.New(s.t.Context(), dispatcher.DefaultConfig(), nc, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		s.t.Fatal(err)
	}
	s.run(d.Run)
	return d
}

// waitModels polls until the dispatcher sees the worker's models.
func waitModels(t *testing.T, d *dispatcher.Dispatcher) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(d.Models()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("dispatcher saw no worker within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mem is the process's memory: heap in use after a GC and resident set.
type mem struct{ heap, rss uint64 }

func (m mem) max(o mem) mem { return mem{max(m.heap, o.heap), max(m.rss, o.rss)} }

// sampleMem forces a GC and reads HeapInuse and VmRSS.
func sampleMem() mem {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return mem{heap: ms.HeapInuse, rss: vmRSS()}
}

// vmRSS reads the resident set size from /proc/self/status (0 when the
// file is not there).
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// idleMem returns freed memory to the OS first, so that a row's RSS does
// not start from the previous row's peak.
func idleMem() mem {
	debug.FreeOSMemory()
	return sampleMem()
}

// watchMem samples memory every step until the returned stop is called;
// stop takes a last sample and returns the peak.
func watchMem(step time.Duration) (stop func() mem) {
	var peak mem
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(step)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				peak = peak.max(sampleMem())
			}
		}
	}()
	return func() mem {
		close(quit)
		<-done
		return peak
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// answers counts the final replies of a numbered backlog on one
// connection: one bit per request, so the count costs no memory that
// would show in the measurement (the replier keeps a channel per request).
type answers struct {
	prefix              string
	seen                []uint64
	answered, dup, fail atomic.Int64
	queueMs             atomic.Int64 // sum of Herd-Queue-Ms
	first, last         atomic.Int64 // unix nanoseconds of the first and last answer
}

func newAnswers(nc *nats.Conn, n int) (*answers, error) {
	a := &answers{prefix: nc.NewRespInbox(), seen: make([]uint64, (n+63)/64)}
	sub, err := nc.Subscribe(a.prefix+".*", func(m *nats.Msg) {
		status := m.Header.Get(wire.HdrStatus)
		if status == "" {
			return
		}
		i, err := strconv.Atoi(m.Subject[len(a.prefix)+2:]) // ".q<i>"
		if err != nil || i < 0 || i >= n {
			a.fail.Add(1)
			return
		}
		if a.seen[i/64]&(1<<(i%64)) != 0 {
			a.dup.Add(1)
			return
		}
		a.seen[i/64] |= 1 << (i % 64)
		if status != "200" {
			a.fail.Add(1)
		}
		if q, err := strconv.ParseInt(m.Header.Get(wire.HdrQueueMs), 10, 64); err == nil {
			a.queueMs.Add(q)
		}
		now := time.Now().UnixNano()
		a.first.CompareAndSwap(0, now)
		a.last.Store(now)
		a.answered.Add(1)
	})
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return a, nil
}

type agentsRow struct {
	agents     int
	r          *result
	idle, peak mem
}

type backlogRow struct {
	n                  int
	publish, drain     time.Duration // drain: first to last answer
	startup            time.Duration // dispatcher start to first answer
	storeBytes         uint64
	idle, queued, peak mem
	meanQueueMs        float64
}

// TestGrowth prints how herd's cost grows with concurrent agents and with
// queued requests, each row against the first row of its table.
func TestGrowth(t *testing.T) {
	benchOnly(t)
	start := time.Now()

	var agentRows []agentsRow
	for _, agents := range []int{1, 10, 100} {
		t.Run(fmt.Sprintf("agents=%d", agents), func(t *testing.T) {
			row, err := growAgents(t, agents)
			if err != nil {
				t.Fatal(err)
			}
			agentRows = append(agentRows, row)
		})
	}
	var backlogRows []backlogRow
	for _, n := range []int{1000, 10000, 100000} {
		t.Run(fmt.Sprintf("queued=%d", n), func(t *testing.T) {
			row, err := growBacklog(t, n)
			if err != nil {
				t.Fatal(err)
			}
			backlogRows = append(backlogRows, row)
		})
	}

	var b strings.Builder
	if len(agentRows) > 0 {
		base := agentRows[0]
		fmt.Fprintf(&b, "\ncost by concurrent agents (%d requests per row, closed loop, unique prompts, instant backend, worker %d slots, fsync off)\n", growthRequests, growthSlots)
		fmt.Fprintf(&b, "  memory: whole test process (NATS server, dispatcher, worker, fake Ollama, agents); heap = HeapInuse after GC; peak of samples every %v; idle before the first row: heap %s, RSS %s\n", growthSampleStep, mib(base.idle.heap), mib(base.idle.rss))
		fmt.Fprintf(&b, "  %6s %8s %9s %9s %11s %11s %8s %7s %7s\n", "agents", "req/s", "p50", "p99", "peak heap", "peak RSS", "req/s x", "heap x", "RSS x")
		for _, r := range agentRows {
			fmt.Fprintf(&b, "  %6d %8.0f %9v %9v %11s %11s %8.2f %7.2f %7.2f\n", r.agents, r.r.throughput,
				r.r.pct(0.5).Round(10*time.Microsecond), r.r.pct(0.99).Round(10*time.Microsecond), mib(r.peak.heap), mib(r.peak.rss),
				r.r.throughput/base.r.throughput, float64(r.peak.heap)/float64(base.peak.heap), float64(r.peak.rss)/float64(base.peak.rss))
		}
	}
	if len(backlogRows) > 0 {
		base := backlogRows[0]
		rate := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
		fmt.Fprintf(&b, "\ncost by queued requests (published with the dispatcher stopped, async window %d; then drained by dispatcher + worker %d slots; instant backend; fsync off: SyncAlways false)\n", growthPubWindow, growthSlots)
		fmt.Fprint(&b, "  store = HERD_REQ stream bytes; heap/RSS queued = whole process with the backlog in place (minus idle: per request);\n")
		fmt.Fprint(&b, "  start = dispatcher start to first answer; drain = first to last answer; queue ms = mean Herd-Queue-Ms; peak = during the drain\n")
		fmt.Fprintf(&b, "  %7s %9s %8s %11s %11s %7s %6s %8s %8s %8s %11s %11s | %5s %5s %6s %5s\n",
			"queued", "publish/s", "store/rq", "heap queued", "RSS queued", "heap/rq", "start", "drain/s", "drain", "queue ms", "peak heap", "peak RSS", "pub x", "drn x", "heap x", "RSS x")
		for _, r := range backlogRows {
			perReq := (float64(r.queued.heap) - float64(r.idle.heap)) / float64(r.n)
			fmt.Fprintf(&b, "  %7d %9.0f %7.0fB %11s %11s %6.0fB %6v %8.0f %8v %8.0f %11s %11s | %5.2f %5.2f %6.2f %5.2f\n",
				r.n, rate(r.n, r.publish), float64(r.storeBytes)/float64(r.n), mib(r.queued.heap), mib(r.queued.rss), perReq,
				r.startup.Round(time.Millisecond), rate(r.n, r.drain), r.drain.Round(10*time.Millisecond), r.meanQueueMs, mib(r.peak.heap), mib(r.peak.rss),
				rate(r.n, r.publish)/rate(base.n, base.publish), rate(r.n, r.drain)/rate(base.n, base.drain),
				float64(r.peak.heap)/float64(base.peak.heap), float64(r.peak.rss)/float64(base.peak.rss))
		}
	}
	fmt.Fprintf(&b, "  growth suite took %v\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Print(b.String())
}

// growAgents runs growthRequests closed-loop requests from agents agents
// against a fresh stack and samples memory while they run.
func growAgents(t *testing.T, agents int) (agentsRow, error) {
	s := newGrowthStack(t)
	s.startWorker()
	d := s.startDispatcher()
	waitModels(t, d)
	nc, js := s.conn()
	rep, err := newReplier(nc)
	if err != nil {
		return agentsRow{}, err
	}
	ctx := t.Context()
	idle := idleMem()
	stop := watchMem(growthSampleStep)
	r, err := drive(fmt.Sprintf("%d agents", agents), growthRequests, agents, func(a, i int) error {
		return rep.roundTrip(ctx, js, wire.ReqSubject(wire.Normal, fmt.Sprintf("agent%d", a)), fmt.Sprintf("g%d", i),
			fmt.Appendf(nil, `{"model":"tiny","prompt":"agents %d request %d"}`, agents, i))
	})
	peak := stop()
	if err != nil {
		return agentsRow{}, err
	}
	return agentsRow{agents: agents, r: r, idle: idle, peak: peak}, nil
}

// growBacklog queues n requests with the dispatcher stopped, measures the
// store and the process with the backlog in place, then starts the
// dispatcher and measures the drain until every request has its answer.
func growBacklog(t *testing.T, n int) (backlogRow, error) {
	s := newGrowthStack(t)
	// The worker runs throughout: it only reads HERD_BATCH, which stays
	// empty until the dispatcher starts.
	s.startWorker()
	var pubErrs atomic.Int64
	var firstPubErr atomic.Value
	nc, js := s.conn(jetstream.WithPublishAsyncMaxPending(growthPubWindow),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			pubErrs.Add(1)
			firstPubErr.CompareAndSwap(nil, err)
		}))
	ans, err := newAnswers(nc, n)
	if err != nil {
		return backlogRow{}, err
	}
	row := backlogRow{n: n, idle: idleMem()}

	t0 := time.Now()
	for i := range n {
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, fmt.Sprintf("agent%d", i%100)))
		m.Data = fmt.Appendf(nil, `{"model":"tiny","prompt":"queued request %d"}`, i)
		id := fmt.Sprintf("q%d", i)
		m.Header.Set(wire.HdrReplyTo, ans.prefix+"."+id)
		for try := 0; ; try++ {
			_, err := js.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithStallWait(time.Second))
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || try >= 30 {
				return row, fmt.Errorf("publish %d: %w", i, err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return row, fmt.Errorf("%d publishes still pending after 2m", js.PublishAsyncPending())
	}
	row.publish = time.Since(t0)
	if e := pubErrs.Load(); e > 0 {
		return row, fmt.Errorf("%d publishes failed, first: %v", e, firstPubErr.Load())
	}
	st, err := js.Stream(t.Context(), wire.StreamReq)
	if err != nil {
		return row, err
	}
	if got := st.CachedInfo().State.Msgs; got != uint64(n) {
		return row, fmt.Errorf("HERD_REQ holds %d requests, want %d", got, n)
	}
	row.storeBytes = st.CachedInfo().State.Bytes
	row.queued = sampleMem()

	stop := watchMem(growthSampleStep)
	t1 := time.Now()
	s.startDispatcher()
	deadline := t1.Add(growthDrainLimit)
	midProfile := os.Getenv("HERD_BENCH_DEBUG") != ""
	for ans.answered.Load() < int64(n) {
		if midProfile && ans.answered.Load() >= int64(n/2) {
			midProfile = false
			writeHeap(fmt.Sprintf("herd-growth-%d-mid.heap", n))
		}
		if time.Now().After(deadline) {
			stop()
			got := ans.answered.Load()
			return row, fmt.Errorf("drain of %d not done in %v: %d answered (%.0f/s), %d failed, %d duplicates",
				n, growthDrainLimit, got, float64(got)/growthDrainLimit.Seconds(), ans.fail.Load(), ans.dup.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	row.startup = time.Duration(ans.first.Load() - t1.UnixNano())
	row.drain = time.Duration(ans.last.Load() - ans.first.Load())
	row.peak = stop()
	row.meanQueueMs = float64(ans.queueMs.Load()) / float64(n)
	if os.Getenv("HERD_BENCH_DEBUG") != "" {
		growthDebug(t, js, n)
	}
	if f, dup := ans.fail.Load(), ans.dup.Load(); f > 0 || dup > 0 {
		return row, fmt.Errorf("drain of %d: %d error replies, %d duplicate replies", n, f, dup)
	}
	// Every answered request leaves HERD_REQ (acknowledged once batched or
	// answered).
	for left := time.Now().Add(10 * time.Second); ; {
		info, err := st.Info(t.Context())
		if err != nil {
			return row, err
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(left) {
			return row, fmt.Errorf("HERD_REQ still holds %d requests after all were answered", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return row, nil
}

// growthDebug (HERD_BENCH_DEBUG) prints what each stream holds after a
// drain and writes a heap profile; the drain also writes one half-way.
func growthDebug(t *testing.T, js jetstream.JetStream, n int) {
	for name := range js.StreamNames(t.Context()).Name() {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			continue
		}
		c := st.CachedInfo()
		fmt.Printf("  after drain of %d: %-18s %-6s msgs %7d bytes %10d\n", n, name, c.Config.Storage, c.State.Msgs, c.State.Bytes)
	}
	writeHeap(fmt.Sprintf("herd-growth-%d.heap", n))
}

// writeHeap writes a heap profile named name to the temporary directory.
func writeHeap(name string) {
	runtime.GC()
	path := filepath.Join(os.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		return
	}
	_ = pprof.WriteHeapProfile(f)
	_ = f.Close()
	fmt.Printf("  heap profile: %s\n", path)
}
