package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamaproxy"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// The generated models the managed Ollama serves (internal/testmodel).
const (
	tinyModel = "herd-tiny"
	slowModel = "herd-slow"
)

// Process names for Kill, Stop, Restart and Output.
const (
	natsName       = "nats"
	dispatcherName = "dispatcher"
	worker1Name    = "worker-1"
	worker2Name    = "worker-2"
	optimizerName  = "optimizer"
)

// faultsEnv turns the suite on; without it every test skips.
const faultsEnv = "HERD_FAULTS"

func TestMain(m *testing.M) {
	code := m.Run()
	shared.stop()
	testbin.Cleanup()
	os.Exit(code)
}

// options configures a harness. The zero value is the default stack.
type options struct {
	// AckWait is queue.ack_wait for every service: how long a batch or a
	// request waits unacknowledged before it is delivered again. Default 6s.
	AckWait time.Duration
	// MaxDeliver is queue.max_deliver. Default 0: herd's (5).
	MaxDeliver int
	// Slots is worker.slots of each worker. Default 2 (one kept for high).
	Slots int
	// Env holds extra HERD_* settings for every service, applied after the
	// harness's own config file (e.g. "HERD_WORKER__ATTEMPTS=1").
	Env []string
	// NoOptimizer leaves the optimizer out.
	NoOptimizer bool
}

func (o options) withDefaults() options {
	if o.AckWait == 0 {
		o.AckWait = 6 * time.Second
	}
	if o.Slots == 0 {
		o.Slots = 2
	}
	return o
}

// Harness is one running herd: a nats-server process, the dispatcher, two
// workers and the optimizer as processes, the shared managed Ollama and
// the Proxy in front of it. Everything is stopped when the test ends.
type Harness struct {
	t *testing.T
	// URL is the NATS server's URL; it stays the same across restarts.
	URL string
	// Proxy stands between the workers and Ollama.
	Proxy *Proxy
	// Ollama is the managed Ollama behind the proxy (shared by the tests
	// of one run; its supervisor restarts it when it dies).
	Ollama *managed.Instance

	dir   string
	opts  options
	procs map[string]*proc
	order []string
	// mu guards conns.
	mu    sync.Mutex
	conns []*nats.Conn
}

// start starts the stack and waits until it answers a request for each
// model. It skips the test unless HERD_FAULTS=1, and skips (or fails with
// HERD_REQUIRE_OLLAMA set) without the pinned tools.
func start(t *testing.T, o options) *Harness {
	t.Helper()
	if os.Getenv(faultsEnv) != "1" {
		t.Skipf("the fault suite runs with %s=1 (make test-faults)", faultsEnv)
	}
	o = o.withDefaults()
	begin := time.Now()
	natsServer := testbin.Tool(t, "nats-server")
	bin := testbin.Binaries(t)
	inst := shared.ollama(t)
	h := &Harness{t: t, dir: t.TempDir(), opts: o, procs: map[string]*proc{}, Ollama: inst}
	h.Proxy = newProxy(t, inst.URL())
	t.Cleanup(h.cleanup)

	// nats-server: JetStream fsyncing every write, on a port kept for
	// restarts, its store in the test's directory.
	port := testbin.FreePort(t)
	h.URL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	conf := filepath.Join(h.dir, "nats.conf")
	natsConf := fmt.Sprintf("listen: 127.0.0.1:%d\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n",
		port, filepath.Join(h.dir, "jetstream"))
	if err := os.WriteFile(conf, []byte(natsConf), 0o600); err != nil {
		t.Fatal(err)
	}
	h.add(&proc{Proc: &harness.Proc{Name: natsName, Path: natsServer, Args: []string{"-c", conf}, Ready: "Server is ready"}})

	// The services share one config file; their own flags name them.
	herdConf := filepath.Join(h.dir, "herd.yaml")
	if err := os.WriteFile(herdConf, []byte(h.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append([]string{}, o.Env...)
	svc := func(name, binary, ready string, args ...string) {
		args = append([]string{"--config", herdConf, "--nats", h.URL, "--http", fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))}, args...)
		h.add(&proc{Proc: &harness.Proc{Name: name, Path: filepath.Join(bin, binary), Args: args, Env: env, Ready: ready}, service: true})
	}
	svc(dispatcherName, "dispatcher", "dispatching")
	for _, w := range []string{worker1Name, worker2Name} {
		svc(w, "worker", "serving", "--ollama", h.Proxy.URLFor(w), "--id", w)
	}
	if !o.NoOptimizer {
		svc(optimizerName, "optimizer", "optimizing")
	}
	for _, name := range h.order {
		h.Restart(name)
	}
	h.warmUp()
	t.Logf("harness: nats-server, %s and Ollama %s ready in %v", strings.Join(h.order[1:], ", "), inst.URL(), ms(time.Since(begin)))
	return h
}

// config is the services' herd.yaml.
func (h *Harness) config() string {
	o := h.opts
	maxDeliver := ""
	if o.MaxDeliver > 0 {
		maxDeliver = fmt.Sprintf("  max_deliver: %d\n", o.MaxDeliver)
	}
	return fmt.Sprintf(`log:
  level: info
  format: json
queue:
  ack_wait: %s
%sworker:
  slots: %d
  cpu_budget: 1
models:
  - name: %s
    num_ctx: 2048
    num_thread: 1
    priority: true
  - name: %s
    num_ctx: 2048
    num_thread: 1
    priority: true
    # Interrupted-stream tests ask herd-slow for 3000 tokens.
    max_predict: 4096
`, o.AckWait, maxDeliver, o.Slots, tinyModel, slowModel)
}

func (h *Harness) add(p *proc) {
	p.Dir, p.BaseEnv = h.dir, harness.ServiceEnv()
	h.procs[p.Name] = p
	h.order = append(h.order, p.Name)
}

// warmUp sends one request per model until each is answered: the workers
// have registered, the dispatcher knows them and the models are loaded.
func (h *Harness) warmUp() {
	h.t.Helper()
	nc := h.Connect()
	c, err := client.New(nc, client.WithAgent("warmup"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	for _, model := range []string{tinyModel, slowModel} {
		natstest.CheckFor(h.t, 90*time.Second, 250*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
			defer cancel()
			_, _, err := c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: "warm up",
				Options: map[string]any{"num_predict": 1}}, client.Cache("off"))
			return err
		})
	}
}

func (h *Harness) proc(name string) *proc {
	h.t.Helper()
	p := h.procs[name]
	if p == nil {
		h.t.Fatalf("harness: no process %q (have %v)", name, h.order)
	}
	return p
}

// Kill sends SIGKILL to the process (its whole process group) and waits
// until it has exited. A process already stopped is left alone.
func (h *Harness) Kill(name string) {
	h.t.Helper()
	p := h.proc(name)
	if !p.Running() {
		return
	}
	if err := p.Kill(30 * time.Second); err != nil {
		h.t.Fatalf("harness: %v", err)
	}
	h.t.Logf("harness: %s killed (SIGKILL)", name)
}

// Stop sends SIGTERM and waits (at most 60s) until the process exits; it
// returns the exit error, nil for a clean exit.
func (h *Harness) Stop(name string) error {
	h.t.Helper()
	p := h.proc(name)
	if !p.Running() {
		return nil
	}
	begin := time.Now()
	err, ok := p.Stop(60 * time.Second)
	if !ok {
		h.t.Fatalf("harness: %s did not stop within 60s of SIGTERM", name)
	}
	h.t.Logf("harness: %s stopped (SIGTERM) in %v: exit %v", name, ms(time.Since(begin)), err)
	return err
}

// Restart starts the process again (or for the first time) and waits
// until it says it is ready and, for a service, its /readyz answers 200
// (it is connected to NATS). A running process is killed first.
func (h *Harness) Restart(name string) {
	h.t.Helper()
	p := h.proc(name)
	if p.Running() {
		h.Kill(name)
	}
	begin := time.Now()
	if err := p.Start(); err != nil {
		h.t.Fatalf("harness: start %s: %v", name, err)
	}
	natstest.CheckFor(h.t, 60*time.Second, 20*time.Millisecond, func() error {
		if !p.Running() {
			return fmt.Errorf("%s exited: %s", name, tail(p.Current(), 2000))
		}
		if !strings.Contains(p.Current(), p.Ready) {
			return fmt.Errorf("%s: no %q in its output yet", name, p.Ready)
		}
		return nil
	})
	if p.service {
		h.WaitReady(name)
	}
	if p.Runs() > 1 {
		h.t.Logf("harness: %s restarted, ready in %v", name, ms(time.Since(begin)))
	}
}

// WaitReady polls the service's /readyz until it answers 200: the service
// is connected to NATS (after a nats-server restart, it has reconnected).
func (h *Harness) WaitReady(name string) {
	h.t.Helper()
	p := h.proc(name)
	addr := p.Args[slices.Index(p.Args, "--http")+1]
	natstest.CheckFor(h.t, 60*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s /readyz: %d %s", name, resp.StatusCode, b)
		}
		return nil
	})
}

// WaitAllReady waits until every running service is connected to NATS.
func (h *Harness) WaitAllReady() {
	h.t.Helper()
	for _, name := range h.order {
		if p := h.procs[name]; p.service && p.Running() {
			h.WaitReady(name)
		}
	}
}

// Running reports whether the process is running.
func (h *Harness) Running(name string) bool { return h.proc(name).Running() }

// Output returns everything the process wrote, over all its runs.
func (h *Harness) Output(name string) string { return h.proc(name).Output() }

// Metrics returns the service's Prometheus text exposition (/metrics).
func (h *Harness) Metrics(name string) string {
	h.t.Helper()
	p := h.proc(name)
	addr := p.Args[slices.Index(p.Args, "--http")+1]
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		h.t.Fatalf("harness: %s /metrics: %v", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// KillOllama sends SIGKILL to the managed Ollama, as a crash would, and
// waits until its supervisor has it answering again.
func (h *Harness) KillOllama() {
	h.t.Helper()
	before := h.Ollama.Restarts()
	if err := h.Ollama.Kill(); err != nil {
		h.t.Fatalf("harness: kill ollama: %v", err)
	}
	h.t.Logf("harness: ollama killed (SIGKILL)")
	natstest.CheckFor(h.t, 90*time.Second, 100*time.Millisecond, func() error {
		if h.Ollama.Restarts() == before {
			return errors.New("ollama not restarted yet")
		}
		resp, err := http.Get(h.Ollama.URL() + "/api/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// Connect returns a new NATS connection that reconnects for ever; it is
// closed when the test ends.
func (h *Harness) Connect(opts ...nats.Option) *nats.Conn {
	h.t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(h.URL, opts...)
	if err != nil {
		h.t.Fatalf("harness: connect: %v", err)
	}
	h.mu.Lock()
	h.conns = append(h.conns, nc)
	h.mu.Unlock()
	return nc
}

// JetStream returns a JetStream context on a new connection.
func (h *Harness) JetStream() jetstream.JetStream {
	h.t.Helper()
	js, err := jetstream.New(h.Connect())
	if err != nil {
		h.t.Fatal(err)
	}
	return js
}

// Idle reports nil when herd holds no work: no request pending or
// unacknowledged on HERD_REQ's consumers and no batch on HERD_BATCH's.
func (h *Harness) Idle(ctx context.Context, js jetstream.JetStream) error {
	for _, stream := range []string{wire.StreamReq, wire.StreamBatch} {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("%s: %w", stream, err)
		}
		l := s.ListConsumers(ctx)
		for info := range l.Info() {
			if info.NumPending > 0 || info.NumAckPending > 0 {
				return fmt.Errorf("%s/%s: %d pending, %d unacknowledged", stream, info.Name, info.NumPending, info.NumAckPending)
			}
		}
		if err := l.Err(); err != nil {
			return fmt.Errorf("%s consumers: %w", stream, err)
		}
	}
	return nil
}

// WaitIdle polls until Idle, at most total.
func (h *Harness) WaitIdle(total time.Duration) {
	h.t.Helper()
	js := h.JetStream()
	natstest.CheckFor(h.t, total, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(h.t.Context(), 5*time.Second)
		defer cancel()
		return h.Idle(ctx, js)
	})
}

func (h *Harness) cleanup() {
	h.mu.Lock()
	for _, nc := range h.conns {
		nc.Close()
	}
	h.mu.Unlock()
	// Services first, nats-server last, each killed: the test is over.
	for i := len(h.order) - 1; i >= 0; i-- {
		_ = h.procs[h.order[i]].Kill(30 * time.Second)
	}
	if h.t.Failed() {
		for _, name := range h.order {
			h.t.Logf("---- %s output (tail) ----\n%s", name, tail(h.procs[name].Output(), 6000))
		}
	}
}

// proc is a process of the harness: a harness.Proc, and whether it is a
// herd service with /readyz.
type proc struct {
	*harness.Proc
	service bool
}

// sharedOllama is the one managed Ollama of a run: starting one and
// importing the generated models takes seconds, so the tests share it.
type sharedOllama struct {
	mu   sync.Mutex // guards the fields below
	inst *managed.Instance
	halt func()
}

var shared sharedOllama

func (s *sharedOllama) ollama(t *testing.T) *managed.Instance {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst == nil {
		// Four parallel calls: two workers with two slots each.
		s.inst, s.halt = harness.StartOllama(t, managed.Config{NumParallel: 4, KeepAlive: -1,
			TestModels: []string{tinyModel, slowModel}}, zap.NewNop())
	}
	return s.inst
}

func (s *sharedOllama) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inst != nil {
		s.halt()
		s.inst = nil
	}
}

// Proxy is the recording proxy between the workers and Ollama (each
// worker on its own URLFor) with faults to inject: answer 503, drop
// connections, stall. Faults apply to the inference calls (/api/generate,
// /api/chat, /api/embed) except Down, which applies to every call.
type Proxy struct {
	*ollamaproxy.Proxy
	// mu guards the fields below.
	mu    sync.Mutex
	fault string    // "", fault503, faultDown or faultStall
	until time.Time // when fault ends
	heal  chan struct{}
	// intercept, when set, may answer a call itself (hooks_test.go).
	intercept func(w http.ResponseWriter, r *http.Request, c *Call) bool
}

// Faults a Proxy injects.
const (
	fault503   = "503"
	faultDown  = "down"
	faultStall = "stall"
)

// Call is one HTTP call a worker made to Ollama, as the proxy saw it.
type Call = ollamaproxy.Call

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p := &Proxy{heal: make(chan struct{})}
	p.Proxy = ollamaproxy.New(t, target, ollamaproxy.WithHook(p.hook))
	return p
}

func inference(path string) bool {
	return path == "/api/generate" || path == "/api/chat" || path == "/api/embed"
}

// Fail503 makes Ollama answer every inference call 503 "server busy" for d.
func (p *Proxy) Fail503(d time.Duration) { p.set(fault503, d) }

// Down drops the connection of every call (inference or not) for d, as if
// Ollama were gone.
func (p *Proxy) Down(d time.Duration) { p.set(faultDown, d) }

// Stall holds every inference call for d (or until Heal, or until the
// worker gives up) before passing it on.
func (p *Proxy) Stall(d time.Duration) { p.set(faultStall, d) }

// Heal ends the current fault at once; stalled calls go through.
func (p *Proxy) Heal() { p.set("", 0) }

func (p *Proxy) set(fault string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.heal)
	p.heal = make(chan struct{})
	p.fault, p.until = fault, time.Now().Add(d)
}

// current returns the fault in force for path, and when it ends.
func (p *Proxy) current(path string) (string, time.Time, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == "" || time.Now().After(p.until) || (p.fault != faultDown && !inference(path)) {
		return "", time.Time{}, nil
	}
	return p.fault, p.until, p.heal
}

// hook runs the interceptor, then injects the fault in force; it returns
// true when the call goes no further.
func (p *Proxy) hook(w http.ResponseWriter, r *http.Request, c *Call) bool {
	if p.intercepted(w, r, c) {
		return true
	}
	fault, until, heal := p.current(r.URL.Path)
	if fault != "" {
		p.MarkInjected(c, fault)
	}
	switch fault {
	case fault503:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"server busy, please try again.  maximum pending requests exceeded"}`))
		return true
	case faultDown:
		panic(http.ErrAbortHandler)
	case faultStall:
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-t.C:
		case <-heal:
		case <-r.Context().Done():
			return true
		}
	}
	return false
}

// Ledger is an agent that sends requests through the Go SDK and keeps a
// record (harness.Ledger) of every request id JetStream acknowledged and
// of every final outcome that came back for it: each final reply seen on
// its inbox (also the repeats the SDK drops), each streamed chunk's
// Herd-Seq, and dead letters in HERD_DLQ. It is safe for concurrent use.
type Ledger struct {
	h      *Harness
	nc     *nats.Conn
	c      *client.Client
	prefix string          // the connection's inbox prefix
	marks  chan string     // marks seen by observe (see settle)
	ctx    context.Context // ends the calls still waiting when Wait gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup
	book   *harness.Ledger[Req]
}

// Entry is what the ledger knows about one request id.
type Entry = harness.Entry[Req]

// Counts are the ledger's totals over acknowledged ids.
type Counts = harness.Counts

// Ledger returns a new agent with its own connection and SDK client.
func (h *Harness) Ledger() *Ledger {
	h.t.Helper()
	prefix := "_FAULTS_" + nuid.Next()
	nc := h.Connect(nats.CustomInboxPrefix(prefix), nats.Name("faults-ledger"))
	l := &Ledger{h: h, nc: nc, prefix: prefix, marks: make(chan string, 16), book: harness.NewLedger[Req]()}
	// Every message to this connection's inboxes, as the wire carries it.
	sub, err := nc.Subscribe(prefix+".>", l.observe)
	if err != nil {
		h.t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if l.c, err = client.New(nc, client.WithAgent("ledger"), client.WithPublishRetries(8)); err != nil {
		h.t.Fatal(err)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	h.t.Cleanup(func() {
		l.cancel()
		l.wg.Wait()
		_ = l.c.Close()
	})
	return l
}

func (l *Ledger) observe(m *nats.Msg) {
	if mark, ok := strings.CutPrefix(m.Subject, l.prefix+".mark."); ok {
		l.marks <- mark
		return
	}
	l.book.Observe(m)
}

// Req is one request an agent sends: a generation of Prompt on Model.
type Req struct {
	Model  string
	Prompt string
	// Options are Ollama's options (num_predict, temperature, seed...).
	Options map[string]any
	// Stream asks for a streamed answer.
	Stream bool
	// Call are SDK call options (priority, id, timeout, cache...).
	Call []client.CallOption
}

// Send sends r in the background and returns its request id.
func (l *Ledger) Send(r Req) string {
	id := nuid.Next()
	l.book.Add(id, r)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		req := &api.GenerateRequest{Model: r.Model, Prompt: r.Prompt, Options: r.Options}
		opts := append(slices.Clone(r.Call), client.RequestID(id))
		var (
			meta *client.Meta
			err  error
		)
		if r.Stream {
			meta, err = l.c.GenerateStream(l.ctx, req, func(api.GenerateResponse) error { return nil }, opts...)
		} else {
			_, meta, err = l.c.Generate(l.ctx, req, opts...)
		}
		l.book.Update(id, func(e *Entry) { e.SetResult(meta, err) })
	}()
	return id
}

// Load sends next(i) for i = 0, 1, ... every interval until the returned
// stop is called; stop returns how many it sent.
func (l *Ledger) Load(every time.Duration, next func(i int) Req) (stop func() int) {
	done := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		i := 0
		for {
			l.Send(next(i))
			i++
			select {
			case <-done:
				sent <- i
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	n := 0
	return func() int {
		once.Do(func() { close(done); n = <-sent })
		return n
	}
}

// Entry returns a copy of what the ledger knows about id.
func (l *Ledger) Entry(id string) Entry {
	e, _ := l.book.Entry(id)
	return e
}

// ByPrompt returns a copy of the entry of the request sent with prompt,
// and false when there is none.
func (l *Ledger) ByPrompt(prompt string) (Entry, bool) {
	for _, e := range l.book.Entries() {
		if e.Req.Prompt == prompt {
			return e, true
		}
	}
	return Entry{}, false
}

// Runs counts the prompts of the ledger's acknowledged requests by the
// Ollama generations that ran them to an answer (status 200 at the
// proxy): once, or more than once (a repeat after a crash or restart:
// allowed, but counted). Requests sent alike share one prompt.
func (l *Ledger) Runs(p *Proxy) (once, repeated int) {
	calls := p.Calls("/api/generate")
	prompts := map[string]bool{}
	for _, e := range l.book.Entries() {
		if e.Acked {
			prompts[e.Req.Prompt] = true
		}
	}
	for prompt := range prompts {
		quoted, _ := json.Marshal(prompt)
		n := 0
		for _, c := range calls {
			if c.Done && c.Status == http.StatusOK && c.Has(string(quoted)) {
				n++
			}
		}
		switch {
		case n == 1:
			once++
		case n > 1:
			repeated++
		}
	}
	return once, repeated
}

// Repeats describes each prompt generated more than once: the calls that
// ran it (worker, start, length) and how each request with that prompt
// was answered (Herd-Cache, worker).
func (l *Ledger) Repeats(p *Proxy) []string {
	byPrompt := map[string][]string{}
	for _, e := range l.book.Entries() {
		if e.Acked && e.Meta != nil {
			byPrompt[e.Req.Prompt] = append(byPrompt[e.Req.Prompt], fmt.Sprintf("%s by %s (%s)", e.ID, e.Meta.Worker, e.Meta.Cache))
		}
	}
	var out []string
	for prompt, answers := range byPrompt {
		quoted, _ := json.Marshal(prompt)
		var runs []string
		for _, c := range p.Calls("/api/generate", string(quoted)) {
			if c.Done && c.Status == http.StatusOK {
				runs = append(runs, fmt.Sprintf("%s at %s for %v", c.Worker, c.Start.Format("15:04:05.000"), ms(c.End.Sub(c.Start))))
			}
		}
		if len(runs) > 1 {
			out = append(out, fmt.Sprintf("%q generated %d times %v; answered %v", prompt, len(runs), runs, answers))
		}
	}
	sort.Strings(out)
	return out
}

// Outstanding counts the calls that have not returned yet.
func (l *Ledger) Outstanding() int {
	n := 0
	for _, e := range l.book.Entries() {
		if !e.Returned {
			n++
		}
	}
	return n
}

// Wait waits until every call has returned, then until herd holds no more
// work (so any repeated reply would have come), then reads HERD_DLQ. When
// ctx ends first, or herd has held no work for giveUpIdle while calls
// still wait (nothing is left to answer them), the calls still waiting
// are ended (their ids count as lost) and an error is returned.
func (l *Ledger) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	js := l.h.JetStream()
	var (
		err       error
		idleSince time.Time
	)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			ierr := l.h.Idle(ictx, js)
			cancel()
			switch {
			case ierr != nil:
				idleSince = time.Time{}
			case idleSince.IsZero():
				idleSince = time.Now()
			case time.Since(idleSince) > giveUpIdle:
				err = fmt.Errorf("%d calls still wait while herd has held no work for %v", l.Outstanding(), giveUpIdle)
			}
		}
		if err != nil {
			l.cancel()
			<-done
			break
		}
	}
	for ctx.Err() == nil {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ierr := l.h.Idle(ictx, js)
		cancel()
		if ierr == nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if serr := l.settle(); serr != nil && err == nil {
		err = serr
	}
	if derr := l.readDLQ(context.WithoutCancel(ctx), js); derr != nil && err == nil {
		err = derr
	}
	return err
}

// giveUpIdle is how long Wait waits for calls while herd holds no work.
const giveUpIdle = 20 * time.Second

// settle returns once observe has seen every message the server sent this
// ledger's connection so far: a reply published before herd went idle may
// still be on its way. It sends itself a mark after a flush (the server
// had queued every earlier message for the connection by then) and waits
// until observe, which sees messages in order, has seen it.
func (l *Ledger) settle() error {
	if err := l.nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("ledger flush: %w", err)
	}
	mark := nuid.Next()
	if err := l.nc.Publish(l.prefix+".mark."+mark, nil); err != nil {
		return fmt.Errorf("ledger mark: %w", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-l.marks:
			if got == mark {
				return nil
			}
		case <-timeout:
			return errors.New("ledger: its own mark did not come back within 10s")
		}
	}
}

// readDLQ records every dead letter of this ledger's requests.
func (l *Ledger) readDLQ(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, wire.StreamDLQ)
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("dlq: %w", err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			return fmt.Errorf("dlq: read: %w", err)
		}
		l.book.Dead(m.Headers().Get(wire.HdrRequestID), m.Headers().Get(wire.HdrReason))
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.Sequence.Stream >= info.State.LastSeq {
			return nil
		}
	}
}

// Counts tallies the ledger. Call it after Wait.
func (l *Ledger) Counts() Counts { return l.book.Counts() }

// Check logs the ledger's counts and fails the test when an acknowledged
// id has no final outcome or more than one, or its stream started again. It returns the counts for
// further assertions.
func (l *Ledger) Check(t *testing.T) Counts {
	t.Helper()
	c := l.Counts()
	t.Logf("ledger: %s", c)
	for _, id := range c.LostIDs {
		e := l.Entry(id)
		t.Errorf("lost: request %s %q (sent %s, SDK error %v, replies %v); %s", id, e.Req.Prompt, e.Sent.Format("15:04:05.000"), e.Err, e.Replies, l.explain(id))
	}
	for _, id := range c.DuplicatedIDs {
		e := l.Entry(id)
		t.Errorf("duplicated: request %s: replies %v, dead letters %q", id, e.Replies, e.DeadReasons)
	}
	for _, id := range c.SplicedIDs {
		e := l.Entry(id)
		t.Errorf("spliced: request %s: its chunks started again, Herd-Seq %v", id, e.Seqs)
	}
	if c.Acked == 0 {
		t.Errorf("the ledger holds no acknowledged request")
	}
	return c
}

// explain says where herd has a request: its Ollama calls, its stored
// outcome in herd_results, and the work herd still holds.
func (l *Ledger) explain(id string) string {
	e := l.Entry(id)
	quoted, _ := json.Marshal(e.Req.Prompt)
	var calls []string
	for _, c := range l.h.Proxy.Calls("/api/generate", string(quoted)) {
		calls = append(calls, fmt.Sprintf("%s %s+%v status %d done %v closed %v dropped %v",
			c.Worker, c.Start.Format("15:04:05.000"), ms(c.End.Sub(c.Start)), c.Status, c.Done, c.WorkerGone, c.Dropped))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := l.h.JetStream()
	stored := "no herd_results entry"
	if kv, err := js.KeyValue(ctx, wire.BucketResults); err != nil {
		stored = "herd_results: " + err.Error()
	} else if v, err := kv.Get(ctx, id); err == nil {
		stored = fmt.Sprintf("herd_results rev %d at %s: %s", v.Revision(), v.Created().Format("15:04:05.000"), tail(string(v.Value()), 200))
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		stored = "herd_results: " + err.Error()
	}
	idle := "herd idle"
	if err := l.h.Idle(ctx, js); err != nil {
		idle = err.Error()
	}
	return fmt.Sprintf("ollama calls %q; %s; %s", calls, stored, idle)
}

// ms rounds d for logs.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// tail returns the last n bytes of s.
func tail(s string, n int) string { return harness.Tail(s, n) }

// TestLedgerCounts: the ledger sees what the SDK hides. A second final
// reply for an answered id (what a crash between reply and store sends)
// counts as duplicated; an acknowledged request that never gets an outcome
// (no worker left to run it) counts as lost.
func TestLedgerCounts(t *testing.T) {
	h := start(t, options{NoOptimizer: true})
	l := h.Ledger()
	a := l.Send(Req{Model: tinyModel, Prompt: "ledger a", Options: map[string]any{"num_predict": 4}})
	l.Send(Req{Model: tinyModel, Prompt: "ledger b", Options: map[string]any{"num_predict": 4}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if c := l.Counts(); c.Answered != 2 || c.Lost+c.Duplicated != 0 || c.Replies != 2 {
		t.Fatalf("two answered requests counted %s", c)
	}
	again := nats.NewMsg(l.Entry(a).Inbox)
	again.Header.Set(wire.HdrStatus, "200")
	again.Data = []byte(`{"done":true}`)
	if err := l.nc.PublishMsg(again); err != nil {
		t.Fatal(err)
	}
	if err := l.settle(); err != nil {
		t.Fatal(err)
	}
	if c := l.Counts(); c.Duplicated != 1 || !slices.Equal(c.DuplicatedIDs, []string{a}) || c.Answered != 2 {
		t.Fatalf("a repeated reply counted %s, duplicated %v", c, c.DuplicatedIDs)
	}

	h.Kill(worker1Name)
	h.Kill(worker2Name)
	l2 := h.Ledger()
	lost := l2.Send(Req{Model: tinyModel, Prompt: "ledger lost", Options: map[string]any{"num_predict": 4}})
	short, cancel2 := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel2()
	if err := l2.Wait(short); err == nil {
		t.Fatal("Wait returned nil with a request no worker can run")
	}
	if c := l2.Counts(); c.Lost != 1 || !slices.Equal(c.LostIDs, []string{lost}) || c.Acked != 1 {
		t.Fatalf("a request no one ran counted %s, lost %v", c, c.LostIDs)
	}
	t.Logf("ledger: a repeated reply is counted duplicated, an unanswered request lost")
}
