package live

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// herd starts a provisioned in-process NATS and returns a connection, its
// JetStream and a metric event publisher.
func herd(t *testing.T) (*nats.Conn, jetstream.JetStream, *events.Publisher) {
	t.Helper()
	s := natstest.Start(t)
	s.Provision(t, provision.Overrides{})
	nc, js := s.Connect(t)
	pub, err := events.NewPublisher(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, pub
}

// run runs c until the test ends.
func run(t *testing.T, c *Collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func (c *Collector) counted() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestCollectorFromEvents(t *testing.T) {
	nc, js, pub := herd(t)
	cfg := DefaultConfig()
	cfg.QueuePoll = 100 * time.Millisecond
	c, err := New(nc, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.every = time.Hour // the test closes the second itself
	run(t, c)
	// Let the subscriptions start before publishing.
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if err := nc.Publish(wire.MetricsPrefix+".probe", []byte("{}")); err != nil {
			return err
		}
		if c.counted() == 0 {
			return errors.New("collector not subscribed yet")
		}
		return nil
	})
	base := c.counted()

	now := time.Now()
	caches := []string{wire.CacheHit, wire.CacheHit, wire.CacheCoalesced, wire.CacheMiss, wire.CacheMiss,
		wire.CacheMiss, wire.CacheMiss, wire.CacheMiss}
	for i, cache := range caches {
		pub.Request(&events.Request{At: now, ID: strconv.Itoa(i), Model: "a", Priority: "high", Status: 200,
			Cache: cache, TotalMs: int64(100 * (i + 1)), Worker: "w1"})
	}
	pub.Request(&events.Request{At: now, Model: "a", Priority: "normal", Status: 503,
		Code: string(wire.CodeBackendUnavailable), TotalMs: 50})
	pub.Request(&events.Request{At: now, Model: "a", Priority: "low", Status: 429,
		Code: string(wire.CodeQueueFull), Dispatcher: true})
	pub.Batch(&events.Batch{At: now, Model: "a", Priority: "high", Size: 8, Fill: 0.5})
	pub.Batch(&events.Batch{At: now, Model: "a", Priority: "high", Size: 16, Fill: 1})
	pub.Worker(&events.Worker{At: now, ID: "w1", Slots: 4, Busy: 1, CPUBudget: 2, Models: []string{"a", "b"}})
	pub.Worker(&events.Worker{At: now, ID: "w2", Slots: 2, Busy: 2, CPUBudget: 1, Models: []string{"a"}})
	open := control.Breaker{Model: "a", State: control.Open, At: now, Reason: "error_rate"}
	if err := nc.Publish(optimizer.BreakerEventSubject("a"), open.Marshal()); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	half := control.Breaker{Model: "b", State: control.HalfOpen, At: now, Reason: "cool_down"}
	if _, err := kv.Put(t.Context(), control.BreakerKey("b"), half.Marshal()); err != nil {
		t.Fatal(err)
	}
	for i, p := range []wire.Priority{wire.High, wire.High, wire.High, wire.Low} {
		if _, err := js.Publish(t.Context(), wire.ReqSubject(p, "agent1"), []byte(`{"model":"a","prompt":"`+strconv.Itoa(i)+`"}`)); err != nil {
			t.Fatal(err)
		}
	}

	const published = 8 + 2 + 2 + 2 + 1
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := c.counted() - base; n < published {
			return fmt.Errorf("%d of %d events received", n, published)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.breakers) != 2 {
			return fmt.Errorf("breakers %v", c.breakers)
		}
		if c.queues[0].Pending != 3 || c.queues[2].Pending != 1 {
			return fmt.Errorf("queues %+v", c.queues)
		}
		return nil
	})
	c.tick(time.Now())
	s := c.Snapshot()

	for _, f := range []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"throughput", s.Throughput, 8, 0},
		{"errors per second", s.ErrorsPerSecond, 2, 0},
		{"error rate", s.ErrorRate, 0.2, 1e-9},
		{"cache hit rate", s.CacheHitRate, 3.0 / 8, 1e-9},
		{"batch fill", s.BatchFill, 0.75, 1e-9},
		// Latencies of the 9 served outcomes: 50, 100, ..., 800 ms.
		{"p50", s.P50Ms, 400, 8},
		{"p95", s.P95Ms, 800, 16},
		{"p99", s.P99Ms, 800, 16},
	} {
		t.Run(f.name, func(t *testing.T) {
			if !near(f.got, f.want, f.tol) {
				t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
			}
		})
	}
	if len(s.Series) != 1 || s.Series[0].Answered != 8 || s.Series[0].Errors != 2 || s.Series[0].High != 3 {
		t.Errorf("series = %+v", s.Series)
	}
	wantQ := []Queue{{Priority: "high", Pending: 3}, {Priority: "normal"}, {Priority: "low", Pending: 1}}
	for i, q := range s.Queues {
		if q != wantQ[i] {
			t.Errorf("queue %d = %+v, want %+v", i, q, wantQ[i])
		}
	}
	wantB := []Budget{{Model: "a", Workers: 2, Slots: 6, Busy: 3, CPUBudget: 3}, {Model: "b", Workers: 1, Slots: 4, Busy: 1, CPUBudget: 2}}
	if fmt.Sprint(s.Budget) != fmt.Sprint(wantB) {
		t.Errorf("budget = %+v, want %+v", s.Budget, wantB)
	}
	if len(s.Breakers) != 2 || s.Breakers[0].Model != "a" || s.Breakers[0].State != control.Open ||
		s.Breakers[1].Model != "b" || s.Breakers[1].State != control.HalfOpen {
		t.Errorf("breakers = %+v", s.Breakers)
	}
	if len(s.Decisions) != 1 || s.Decisions[0].Kind != "breaker" || s.Decisions[0].Model != "a" ||
		s.Decisions[0].State != control.Open || s.Decisions[0].Reason != "error_rate" {
		t.Errorf("decisions = %+v", s.Decisions)
	}

	// The next second is empty, so the rates halve over the two seconds.
	c.tick(time.Now().Add(time.Second))
	if s := c.Snapshot(); s.Throughput != 4 || len(s.Series) != 2 || s.Series[1].Answered != 0 {
		t.Errorf("after an empty second: throughput %v, series %+v", s.Throughput, s.Series)
	}
}

func TestDecisionsAreBounded(t *testing.T) {
	nc, _, _ := herd(t)
	cfg := DefaultConfig()
	cfg.Decisions = 3
	c, err := New(nc, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c.onEvent(&nats.Msg{Subject: wire.EventsPrefix + ".allocation." + wire.EncodeModel("llama3.2:3b"),
			Data: []byte(`{"reason":"r` + strconv.Itoa(i) + `"}`)})
	}
	c.tick(time.Now())
	s := c.Snapshot()
	if len(s.Decisions) != 3 || s.Decisions[0].Reason != "r4" || s.Decisions[2].Reason != "r2" ||
		s.Decisions[0].Model != "llama3.2:3b" || s.Decisions[0].Kind != "allocation" {
		t.Errorf("decisions = %+v", s.Decisions)
	}
	if len(s.Breakers) != 0 {
		t.Errorf("breakers = %+v, want none from an allocation", s.Breakers)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"short history", func(c *Config) { c.History = time.Second }},
		{"span over history", func(c *Config) { c.Span = 10 * time.Minute }},
		{"fast poll", func(c *Config) { c.QueuePoll = time.Millisecond }},
		{"no decisions", func(c *Config) { c.Decisions = 0 }},
		{"no staleness", func(c *Config) { c.WorkerStale = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			if _, err := New(nil, cfg, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	nc, _, _ := herd(t)
	c, err := New(nc, DefaultConfig(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)

	type got struct {
		StatusCode int
		Header     http.Header
	}
	get := func(path string) (got, string) {
		t.Helper()
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return got{res.StatusCode, res.Header}, string(b)
	}
	res, body := get("/live")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, `id="tile-throughput"`) || !strings.Contains(body, "EventSource") {
		t.Fatalf("GET /live: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// No external assets: the only URL is the SVG namespace.
	if n := strings.Count(body, "http://") + strings.Count(body, "https://"); n != 1 || strings.Contains(body, "src=\"http") {
		t.Errorf("page references %d URLs, want only the SVG namespace", n)
	}
	res, body = get("/live/snapshot")
	var s Snapshot
	if res.StatusCode != 200 || json.Unmarshal([]byte(body), &s) != nil || len(s.Queues) != 3 {
		t.Errorf("GET /live/snapshot: %d %q", res.StatusCode, body)
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/live/events", nil)
	es, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Body.Close()
	if ct := es.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events content type %q", ct)
	}
	sc := bufio.NewScanner(es.Body)
	sc.Buffer(nil, 1<<20)
	snaps := 0
	for snaps < 2 && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatalf("event data: %v", err)
			}
			snaps++
		}
	}
	if snaps < 2 {
		t.Fatalf("got %d snapshots: %v", snaps, sc.Err())
	}
}

const chromium = "/usr/bin/chromium"

// TestLivePageInBrowser opens the live page in headless Chromium while
// synthetic traffic runs and checks that the numbers change and the plots
// draw.
func TestLivePageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("HERD_REQUIRE_BROWSER") == "1" {
			t.Fatalf("HERD_REQUIRE_BROWSER=1 and no browser: %v", err)
		}
		t.Skipf("no %s (apt-get install -y chromium)", chromium)
	}
	nc, js, pub := herd(t)
	c, err := New(nc, DefaultConfig(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)

	// Traffic: a rate that grows every tick, so throughput keeps changing;
	// bounded by time and by the test's end.
	tctx, stopTraffic := context.WithTimeout(context.Background(), 30*time.Second)
	trafficDone := make(chan struct{})
	t.Cleanup(func() { stopTraffic(); <-trafficDone })
	go func() {
		defer close(trafficDone)
		models := []string{"llama3.2:1b", "qwen2.5:0.5b"}
		caches := []string{wire.CacheMiss, wire.CacheMiss, wire.CacheHit, wire.CacheCoalesced}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tctx.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			for j := range 1 + i/8 {
				m := models[j%len(models)]
				st, code := 200, ""
				if (i+j)%17 == 0 {
					st, code = 503, string(wire.CodeBackendUnavailable)
				}
				pub.Request(&events.Request{At: now, Model: m, Priority: string(wire.Priorities[j%3]), Status: st,
					Code: code, Cache: caches[(i+j)%len(caches)], TotalMs: int64(40 + (i*7+j*13)%400), QueueMs: 5})
			}
			if i%4 == 0 {
				pub.Batch(&events.Batch{At: now, Model: models[i%2], Priority: "normal", Size: 1 + i%16, Fill: float64(1+i%16) / 16})
			}
			if i%20 == 0 {
				for k, m := range models {
					pub.Worker(&events.Worker{At: now, ID: "w" + strconv.Itoa(k), Slots: 4, Busy: i % 5, CPUBudget: 2, Models: []string{m}})
				}
				b := control.Breaker{Model: models[1], State: []string{control.Open, control.HalfOpen, control.Closed}[(i/20)%3],
					At: now, Reason: "synthetic"}
				_ = nc.Publish(optimizer.BreakerEventSubject(b.Model), b.Marshal())
			}
			if i%3 == 0 && i < 200 {
				_, _ = js.PublishAsync(wire.ReqSubject(wire.Priorities[i%3], "load"), []byte(`{"model":"x","prompt":"p`+strconv.Itoa(i)+`"}`))
			}
		}
	}()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 20*time.Second)
	defer cancelT()

	const tile = "#tile-throughput .value"
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/live"), chromedp.WaitVisible(tile)); err != nil {
		t.Fatalf("open page: %v", err)
	}
	read := func() string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(tile, chromedp.NodeVisible))
		if err != nil {
			t.Fatalf("read tile: %v", err)
		}
		return strings.TrimSpace(s)
	}
	var first string
	natstest.CheckFor(t, 8*time.Second, 100*time.Millisecond, func() error {
		first = read()
		if _, err := strconv.ParseFloat(strings.ReplaceAll(first, ",", ""), 64); err != nil || first == "0.0" {
			return fmt.Errorf("throughput tile %q, want traffic", first)
		}
		return nil
	})
	var second string
	natstest.CheckFor(t, 6*time.Second, 200*time.Millisecond, func() error {
		if second = read(); second == first {
			return fmt.Errorf("throughput tile still %q", second)
		}
		return nil
	})
	t.Logf("throughput tile went from %s to %s answered/s", first, second)

	type plots struct {
		Throughput int    `json:"throughput"`
		Latency    int    `json:"latency"`
		Queues     int    `json:"queues"`
		Lines      int    `json:"lines"`
		Status     string `json:"status"`
	}
	drawn, err := chromedp.Run(bctx, chromedp.Evaluate[plots](`({
		throughput: +document.getElementById("plot-throughput").dataset.points || 0,
		latency: +document.getElementById("plot-latency").dataset.points || 0,
		queues: +document.getElementById("plot-queues").dataset.points || 0,
		lines: document.querySelectorAll("svg.plot polyline").length,
		status: document.getElementById("status").textContent,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if drawn.Throughput < 2 || drawn.Latency < 2 || drawn.Queues < 2 || drawn.Lines != 8 {
		t.Errorf("plots drawn = %+v, want every line with points", drawn)
	}
	if !strings.HasPrefix(drawn.Status, "live") {
		t.Errorf("status = %q", drawn.Status)
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("HERD_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "live-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
