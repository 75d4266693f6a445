package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/pool"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// TestPoolFollowsLoad runs `herd up --workers auto` on this host's first
// two cores, one core per instance, with the real Ollama: a burst grows the
// pool from 1 instance to 2, whose Ollamas run on different cores (their
// /proc/<pid>/status Cpus_allowed_list); when the burst is over the pool
// drains one and shrinks back to 1. A trickle of requests runs throughout.
// The ledger: every request JetStream acknowledged gets exactly one reply
// on the wire.
func TestPoolFollowsLoad(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pins Ollama to cores: linux only")
	}
	bin := testbin.Ollama(t)
	if testing.Short() {
		t.Skip("runs real Ollama servers")
	}
	cores, err := pool.Cores()
	if err != nil {
		t.Fatal(err)
	}
	if len(cores) < 2 {
		t.Skipf("needs two cores, has %v", cores)
	}
	t.Setenv("OLLAMA_HOST", "")

	c := config.Default()
	c.Server.Listen = fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))
	c.Server.DataDir = t.TempDir()
	c.HTTP.Listen, c.API.Listen, c.Ollama.URL = "", "", ""
	c.Managed.Binary = bin
	c.Pool = pool.Config{Instances: pool.Auto, CoresPerInstance: 1, MinInstances: 1, MaxInstances: 2, CPUs: cores[:2]}
	c.Worker.Models = []string{"herd-tiny"}
	c.Worker.Slots, c.Worker.ReservedHighSlots = 2, 0
	c.Worker.Heartbeat = 500 * time.Millisecond
	c.Dispatcher.BatchSize = 2 // many batches, so that a new instance finds some
	c.Optimizer.Scale.UpAfter, c.Optimizer.Scale.DownAfter = 1, 3
	c.Optimizer.Scale.DownHold = 4 * time.Second
	c.Optimizer.WorkerTimeout = 3 * time.Second
	// A removed instance's calls that run longer than this are handed back.
	c.Worker.DrainTimeout = time.Second

	var handedBack atomic.Int64
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel), zaptest.WrapOptions(zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == "drain timeout; handing running batches back" {
			handedBack.Add(1)
		}
		return nil
	})))
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- stack.Up(ctx, c, log, func(url string) { ready <- url })
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("herd up: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("herd up: not ready after a minute")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("herd up: %v", err)
		}
		if n := len(ollamas(t)); n != 0 {
			t.Errorf("%d Ollama servers left running after herd up stopped", n)
		}
	}()

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	l := newLedger(t, nc)

	// One instance, on the first core, answers.
	l.send(t, 16)
	l.waitAnswered(t, time.Minute)
	seen := &coreSets{}
	seen.add(checkOllamas(t, 1, 30*time.Second))

	stopSampling := seen.sample(t)
	trickleDone := make(chan struct{})
	stopTrickle := make(chan struct{})
	go func() {
		defer close(trickleDone)
		tick := time.NewTicker(400 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopTrickle:
				return
			case <-tick.C:
				l.send(t, 64)
			}
		}
	}()

	begin := time.Now()
	for range 40 {
		l.send(t, 1024)
	}
	grown := checkOllamas(t, 2, 45*time.Second)
	seen.add(grown)
	t.Logf("grew to 2 instances %.1fs after the burst began: %v", time.Since(begin).Seconds(), grown)
	l.waitAnswered(t, 90*time.Second)
	t.Logf("burst answered after %.1fs", time.Since(begin).Seconds())
	idle := time.Now()
	shrunk := checkOllamas(t, 1, 45*time.Second)
	t.Logf("shrank to 1 instance %.1fs after the burst was answered: %v", time.Since(idle).Seconds(), shrunk)
	time.Sleep(time.Second) // the trickle goes on to the remaining instance

	// A second burst grows the pool again; then the instances key says 1
	// (as a scale-in from outside would) while the added instance runs
	// long calls: it drains for worker.drain_timeout and hands back what
	// still runs, which the remaining instance answers.
	begin = time.Now()
	second := l.mark()
	for range 16 {
		l.send(t, 2048)
	}
	seen.add(checkOllamas(t, 2, 45*time.Second))
	t.Logf("grew again %.1fs after the second burst began", time.Since(begin).Seconds())
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := l.answeredBy(second, "-w1"); n == 0 {
			return fmt.Errorf("the added instance answered none of the second burst yet")
		}
		return nil
	})
	scaleIn(t, nc, 1)
	checkOllamas(t, 1, 30*time.Second)
	t.Logf("scaled in %.1fs after the second burst began; handed back by drain timeout: %d", time.Since(begin).Seconds(), handedBack.Load())
	close(stopTrickle)
	<-trickleDone
	l.waitAnswered(t, 90*time.Second)
	stopSampling()
	if handedBack.Load() == 0 {
		t.Log("the removed instance finished its calls within its drain timeout: nothing was handed back")
	}

	sent, acked, answered, lost, dup, workers := l.counts()
	t.Logf("ledger: %d sent, %d acked, %d answered, %d lost, %d duplicated; answered by %v; core sets seen %v",
		sent, acked, answered, lost, dup, workers, seen.list())
	if lost != 0 || dup != 0 || acked != sent || answered != acked {
		t.Errorf("ledger: %d sent, %d acked, %d answered, %d lost, %d duplicated", sent, acked, answered, lost, dup)
	}
	l.mu.Lock()
	for _, b := range l.bad {
		t.Errorf("error reply %s", b)
	}
	l.mu.Unlock()
	if len(workers) < 2 {
		t.Errorf("answers came from %v: the added instance answered nothing", workers)
	}
}

// scaleIn writes an instances decision of n to herd_control, as the
// optimizer does.
func scaleIn(t *testing.T, nc *nats.Conn, n int) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	d := control.Instances{Recommended: n, At: time.Now(), Reason: "test: scale in during a burst"}
	if _, err := kv.Put(t.Context(), control.InstancesKey, d.Marshal()); err != nil {
		t.Fatal(err)
	}
}

// ledger sends requests on the durable door and counts the final replies
// on the wire per request id.
type ledger struct {
	js jetstream.JetStream
	// mu guards everything below.
	mu      sync.Mutex
	order   []string
	acked   map[string]bool
	replies map[string][]string // id -> Herd-Status of each reply
	workers map[string]int      // Herd-Worker -> answers
	by      map[string]string   // id -> Herd-Worker of its last reply
	bad     []string
}

func newLedger(t *testing.T, nc *nats.Conn) *ledger {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l := &ledger{js: js, acked: map[string]bool{}, replies: map[string][]string{}, workers: map[string]int{}, by: map[string]string{}}
	sub, err := nc.Subscribe("pooltest.>", func(m *nats.Msg) {
		id := strings.TrimPrefix(m.Subject, "pooltest.")
		if !strings.HasPrefix(id, "p") {
			return // the workers' presence probes (a sibling of the reply subject)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		st := m.Header.Get(wire.HdrStatus)
		l.replies[id] = append(l.replies[id], st)
		l.workers[m.Header.Get(wire.HdrWorker)]++
		l.by[id] = m.Header.Get(wire.HdrWorker)
		if st != "200" {
			l.bad = append(l.bad, id+": "+st+" "+string(m.Data))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return l
}

// send publishes one generate request of numPredict tokens, sampled (so
// neither cached nor coalesced), and records whether JetStream acked it.
func (l *ledger) send(t *testing.T, numPredict int) {
	l.mu.Lock()
	id := "p" + strconv.Itoa(len(l.order))
	l.order = append(l.order, id)
	l.mu.Unlock()
	body, _ := json.Marshal(map[string]any{
		"model": "herd-tiny", "prompt": "pool " + id,
		"options": map[string]any{"num_predict": numPredict, "temperature": 0.8},
	})
	m := nats.NewMsg(wire.ReqSubject(wire.Normal, "pooltest"))
	m.Header.Set(wire.HdrMsgID, id)
	m.Header.Set(wire.HdrReplyTo, "pooltest."+id)
	m.Data = body
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		t.Logf("publish %s: %v", id, err)
		return
	}
	l.mu.Lock()
	l.acked[id] = true
	l.mu.Unlock()
}

// mark returns the number of requests sent so far.
func (l *ledger) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.order)
}

// answeredBy counts the requests sent after mark answered by a worker
// whose id ends in suffix.
func (l *ledger) answeredBy(mark int, suffix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, id := range l.order[mark:] {
		if strings.HasSuffix(l.by[id], suffix) {
			n++
		}
	}
	return n
}

// waitAnswered waits until every acked request has a reply.
func (l *ledger) waitAnswered(t *testing.T, total time.Duration) {
	t.Helper()
	natstest.CheckFor(t, total, 100*time.Millisecond, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		waiting := 0
		for id := range l.acked {
			if len(l.replies[id]) == 0 {
				waiting++
			}
		}
		if waiting > 0 {
			return fmt.Errorf("%d of %d acked requests unanswered", waiting, len(l.acked))
		}
		return nil
	})
}

func (l *ledger) counts() (sent, acked, answered, lost, dup int, workers map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.order {
		n := len(l.replies[id])
		switch {
		case l.acked[id] && n == 0:
			lost++
		case n > 1:
			dup++
		}
		if l.acked[id] {
			acked++
		}
		if n > 0 {
			answered++
		}
	}
	return len(l.order), acked, answered, lost, dup, maps.Clone(l.workers)
}

// ollamas returns the Cpus_allowed_list of every `ollama serve` this
// process started, by pid.
func ollamas(t *testing.T) map[int]string {
	t.Helper()
	out := map[int]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/status")
	self := strconv.Itoa(os.Getpid())
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var name, ppid, cpus string
		for line := range strings.Lines(string(b)) {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			switch k {
			case "Name":
				name = strings.TrimSpace(v)
			case "PPid":
				ppid = strings.TrimSpace(v)
			case "Cpus_allowed_list":
				cpus = strings.TrimSpace(v)
			}
		}
		if name == "ollama" && ppid == self {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out[pid] = cpus
		}
	}
	return out
}

// checkOllamas waits until exactly n Ollama servers run, each on cores no
// other one has, and returns their core lists.
func checkOllamas(t *testing.T, n int, total time.Duration) map[int]string {
	t.Helper()
	var got map[int]string
	natstest.CheckFor(t, total, 100*time.Millisecond, func() error {
		got = ollamas(t)
		if len(got) != n {
			return fmt.Errorf("%d Ollama servers %v, want %d", len(got), got, n)
		}
		sets := map[string]bool{}
		for _, cpus := range got {
			if sets[cpus] || strings.ContainsAny(cpus, ",-") {
				return fmt.Errorf("Ollama servers share cores or run on more than one: %v", got)
			}
			sets[cpus] = true
		}
		return nil
	})
	return got
}

// coreSets collects the distinct core lists the Ollama servers ran on.
type coreSets struct {
	mu   sync.Mutex
	sets map[string]bool
	max  int
	// over counts consecutive samples with more servers than cores; worst
	// is its longest run. A server that is stopping while its replacement
	// starts can be seen once; one that stays is a pool over its cores.
	over, worst int
}

func (s *coreSets) add(m map[int]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sets == nil {
		s.sets = map[string]bool{}
	}
	for _, cpus := range m {
		s.sets[cpus] = true
	}
	s.max = max(s.max, len(m))
	if len(m) > 2 {
		s.over++
		s.worst = max(s.worst, s.over)
	} else {
		s.over = 0
	}
}

func (s *coreSets) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.sets {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sample records the core lists every 200ms until stop is called, and
// fails the test if more Ollama servers than cores ever ran.
func (s *coreSets) sample(t *testing.T) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(200 * time.Millisecond):
				s.add(ollamas(t))
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		if s.worst >= 5 {
			t.Errorf("%d Ollama servers ran at once on 2 cores for %d samples in a row (a second)", s.max, s.worst)
		} else if s.max > 2 {
			t.Logf("%d Ollama servers seen at once for %d sample(s): one stopping while its replacement starts", s.max, s.worst)
		}
	}
}

// TestPoolNeedsManagedOllama: a pool runs an Ollama per instance, so herd
// up refuses one together with an Ollama of the user's.
func TestPoolNeedsManagedOllama(t *testing.T) {
	c := config.Default()
	c.Pool.Instances = "2"
	c.Ollama.URL = "http://127.0.0.1:1"
	c.Server.DataDir = t.TempDir()
	err := stack.Up(t.Context(), c, zaptest.NewLogger(t), nil)
	if err == nil || !strings.Contains(err.Error(), "ollama.url") {
		t.Fatalf("herd up --workers 2 --ollama URL = %v, want an error naming ollama.url", err)
	}
}
