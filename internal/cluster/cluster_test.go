package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// ackWait is the request and batch consumers' ack wait in this test: work
// held by a killed dispatcher or worker comes back after it.
const ackWait = 5 * time.Second

// callTimeout is how long an agent waits for an answer before it asks
// again under the same id (and the SDK cancels the request). It is longer
// than a leader election plus a redelivery, so a slow answer is not
// canceled; a reply lost with the agent's server is found in herd_results
// by the second call.
const callTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestClusterFailover: three nats-servers in a cluster with every stream
// and bucket at R3; two dispatchers and two workers (the binaries), each
// on its node's server; agents on the Go SDK connected with the whole URL
// list. Under load the HERD_REQ stream leader's server is SIGKILLed and
// restarted, then a whole other node (its server, dispatcher and worker)
// is SIGKILLed and left down until the load ends. Every request whose
// publish JetStream acknowledged gets exactly one final reply; nothing is
// lost or duplicated; the restarted servers catch up on every R3 stream.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes about a minute")
	}
	began := time.Now()
	natsServer := testbin.Tool(t, "nats-server")
	bin := testbin.Binaries(t)
	t.Logf("built herd's commands in %v", time.Since(began).Round(time.Millisecond))
	fake := ollamatest.New(t, ollamatest.WithModels(model), ollamatest.WithLatency(40*time.Millisecond))

	// Three nodes. Node 0 runs a dispatcher and a worker, node 1 a
	// dispatcher, node 2 a worker: both dispatchers and both workers are
	// on different servers, and every server has herd on it.
	nodes := newNodes(t, natsServer, 3)
	for _, n := range nodes {
		n.startServer(t)
	}
	obs, js := connect(t, allURLs(nodes), "observer")
	defer obs.Close()
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("no JetStream meta leader yet: %w", err)
		}
		return nil
	})
	cfg := config.Default()
	cfg.NATS.Replicas = 3
	cfg.Queue.AckWait = ackWait
	natstest.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := stack.Provision(ctx, obs, cfg)
		return err
	})
	t.Logf("cluster of 3 with R3 streams up at %v", time.Since(began).Round(time.Millisecond))

	env := []string{"HERD_LOG__FORMAT=json", "HERD_NATS__REPLICAS=3", "HERD_QUEUE__ACK_WAIT=" + ackWait.String()}
	nodes[0].service(t, env, filepath.Join(bin, "dispatcher"), "d1", "dispatching")
	nodes[0].service(t, env, filepath.Join(bin, "worker"), "w1", "serving", "--ollama", fake.URL, "--id", "w1", "--slots", "4")
	nodes[1].service(t, env, filepath.Join(bin, "dispatcher"), "d2", "dispatching")
	nodes[2].service(t, env, filepath.Join(bin, "worker"), "w2", "serving", "--ollama", fake.URL, "--id", "w2", "--slots", "4")
	for _, n := range nodes {
		for _, p := range n.services {
			p.WaitReady(t, 30*time.Second)
		}
	}

	leaders := watchLeader(t, js, wire.StreamReq)
	l := newLedger()
	load := l.run(t, allURLs(nodes), 6, 3)
	loadAt := time.Now()
	l.waitAnswered(t, 60)

	// 1. SIGKILL the server that leads HERD_REQ, under load.
	first := leaderNode(t, js, nodes)
	firstLeader := first.name
	before := l.answered()
	_ = first.srv.Kill(30 * time.Second)
	t.Logf("%v: SIGKILLed %s, the HERD_REQ leader (%d answered so far)", since(loadAt), first.name, before)
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if ld := leaders.current(); ld == "" || ld == firstLeader {
			return fmt.Errorf("HERD_REQ leader is %q", ld)
		}
		return nil
	})
	t.Logf("%v: HERD_REQ leader is now %s", since(loadAt), leaders.current())
	l.waitAnswered(t, before+60)

	// Restart it and wait until it has caught up on every stream and
	// bucket, as an operator would before taking down another node: with
	// one server down and another behind, a stream has no quorum.
	first.startServer(t)
	waitCurrent(t, js, replicated(), 45*time.Second)
	t.Logf("%v: %s restarted and current on all streams and buckets", since(loadAt), first.name)

	// 2. SIGKILL a whole other node: its server and the herd services on
	// it. The current leader's node when it is not the one just restarted.
	second := leaderNode(t, js, nodes)
	if second == first {
		second = nodes[(indexOf(nodes, first)+1)%len(nodes)]
	}
	before = l.answered()
	second.kill()
	t.Logf("%v: SIGKILLed node %s (server and %s) (%d answered so far)", since(loadAt), second.name, second.serviceNames(), before)
	l.waitAnswered(t, before+60)
	l.stopAndWait(t, load, 90*time.Second)
	loadTime := time.Since(loadAt)
	leaders.stop()

	s := l.summary()
	t.Logf("ledger: %d sent, %d acked, %d answered (%d cache hits, %d coalesced), %d errors %v, %d lost, %d duplicated, %d not acked; "+
		"%d publish attempts seen for %d calls, %d calls retried by agents (%d not acked, %d acked but unanswered in %v); %d ollama calls; load %v",
		s.sent, s.acked, s.answered, s.hits, s.coalesced, s.errors, s.codes, s.lost, s.duplicated, s.unacked,
		s.attempts, s.calls, s.calls-s.sent, s.callsUnacked, s.timeouts, callTimeout, fake.Calls("generate"), loadTime.Round(time.Millisecond))
	t.Logf("HERD_REQ leaders: %s", leaders.String())
	for _, d := range s.slow {
		t.Logf("not answered within %v: %s", callTimeout, d)
	}
	if s.lost != 0 || s.duplicated != 0 || s.unacked != 0 {
		t.Errorf("lost %d, duplicated %d, never acked %d; lost ids %v, duplicated ids %v", s.lost, s.duplicated, s.unacked, s.lostIDs, s.dupIDs)
	}
	if s.answered == 0 || s.answered+s.errors != s.acked {
		t.Errorf("%d answered + %d errors, want the %d acked", s.answered, s.errors, s.acked)
	}
	if leaders.changes() < 1 {
		t.Errorf("no HERD_REQ leader change observed: %s", leaders.String())
	}

	// The node left down comes back and catches up on every stream and
	// bucket; all are R3.
	second.startServer(t)
	waitCurrent(t, js, replicated(), 45*time.Second)
	t.Logf("%v: %s restarted; all %d streams and buckets R3 with both followers current; wall time %v",
		since(loadAt), second.name, len(replicated()), time.Since(began).Round(time.Millisecond))
}

// replicated returns the streams behind herd's streams and buckets.
func replicated() []string {
	return []string{
		wire.StreamReq, wire.StreamBatch, wire.StreamMetrics, wire.StreamDLQ, wire.StreamCapture, wire.StreamBench,
		"KV_" + wire.BucketCache, "KV_" + wire.BucketResults, "KV_" + wire.BucketInflight, "KV_" + wire.BucketControl,
	}
}

// waitCurrent waits until every named stream has three replicas, a
// leader, and two followers that are online and current.
func waitCurrent(t *testing.T, js jetstream.JetStream, streams []string, total time.Duration) {
	t.Helper()
	natstest.CheckFor(t, total, 200*time.Millisecond, func() error {
		for _, name := range streams {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			s, err := js.Stream(ctx, name)
			cancel()
			if err != nil {
				return fmt.Errorf("stream %s: %w", name, err)
			}
			info := s.CachedInfo()
			if info.Config.Replicas != 3 {
				t.Fatalf("stream %s has %d replicas, want 3", name, info.Config.Replicas)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" {
				return fmt.Errorf("stream %s has no leader", name)
			}
			if len(info.Cluster.Replicas) != 2 {
				return fmt.Errorf("stream %s: %d followers", name, len(info.Cluster.Replicas))
			}
			for _, r := range info.Cluster.Replicas {
				if r.Offline || !r.Current {
					return fmt.Errorf("stream %s: follower %s offline %v current %v lag %d", name, r.Name, r.Offline, r.Current, r.Lag)
				}
			}
		}
		return nil
	})
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// leaderNode returns the node whose server leads HERD_REQ.
func leaderNode(t *testing.T, js jetstream.JetStream, nodes []*node) *node {
	t.Helper()
	var found *node
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ld, err := streamLeader(t.Context(), js, wire.StreamReq)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.name == ld {
				found = n
				return nil
			}
		}
		return fmt.Errorf("HERD_REQ leader %q is no node", ld)
	})
	return found
}

func streamLeader(ctx context.Context, js jetstream.JetStream, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return "", err
	}
	if c := s.CachedInfo().Cluster; c != nil {
		return c.Leader, nil
	}
	return "", errors.New("no cluster info")
}

func indexOf(nodes []*node, n *node) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// leaderWatch records every change of a stream's leader.
type leaderWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time
	// mu guards seen.
	mu   sync.Mutex
	seen []leaderSeen
}

type leaderSeen struct {
	at     time.Duration
	leader string
}

func watchLeader(t *testing.T, js jetstream.JetStream, stream string) *leaderWatch {
	ctx, cancel := context.WithCancel(t.Context())
	w := &leaderWatch{cancel: cancel, done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if ld, err := streamLeader(ctx, js, stream); err == nil && ld != "" {
				w.mu.Lock()
				if len(w.seen) == 0 || w.seen[len(w.seen)-1].leader != ld {
					w.seen = append(w.seen, leaderSeen{time.Since(w.start).Round(100 * time.Millisecond), ld})
				}
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *leaderWatch) stop() {
	w.cancel()
	<-w.done
}

func (w *leaderWatch) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 {
		return ""
	}
	return w.seen[len(w.seen)-1].leader
}

func (w *leaderWatch) changes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(0, len(w.seen)-1)
}

func (w *leaderWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, s := range w.seen {
		parts = append(parts, fmt.Sprintf("%s at %v", s.leader, s.at))
	}
	return strings.Join(parts, " -> ")
}

// ledger follows every request id (harness.Ledger): whether JetStream
// acknowledged its publish, its final outcome as the SDK returned it, and
// every final reply and publish seen on the agents' connections.
type ledger struct {
	stop chan struct{}
	book *harness.Ledger[*calls]
}

// calls is what the agent did for one id: how many times it published
// (attempts, seen on the wire) and called the SDK (calls; callsUnacked
// those whose publish was not acknowledged; timeouts those acknowledged
// but not answered in callTimeout), and its answer's Herd-Cache (miss,
// hit or coalesced).
type calls struct {
	attempts, calls, callsUnacked, timeouts int
	cache                                   string
}

func newLedger() *ledger {
	return &ledger{stop: make(chan struct{}), book: harness.NewLedger[*calls]()}
}

func (l *ledger) answered() int {
	n := 0
	for _, e := range l.book.Entries() {
		if e.Status == http.StatusOK {
			n++
		}
	}
	return n
}

func (l *ledger) waitAnswered(t *testing.T, n int) {
	t.Helper()
	natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if got := l.answered(); got < n {
			return fmt.Errorf("%d of %d answered", got, n)
		}
		return nil
	})
}

// run starts agents connections with callers each; every caller sends
// one request after another until stopAndWait.
func (l *ledger) run(t *testing.T, urls string, agents, callers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for a := range agents {
		name := fmt.Sprintf("agent%d", a)
		nc, _ := connect(t, urls, name)
		t.Cleanup(nc.Close)
		c, err := client.New(nc, client.WithAgent(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		l.tap(t, nc, name)
		for g := range callers {
			wg.Go(func() { l.caller(t, c, fmt.Sprintf("%s-%d", name, g)) })
		}
	}
	return &wg
}

// tap counts the final replies and the request publishes on an agent's
// connection: the SDK's inbox is <connection inbox prefix>.<token>, and a
// reply goes to <inbox>.<request id>.
func (l *ledger) tap(t *testing.T, nc *nats.Conn, agent string) {
	inbox := nc.NewRespInbox()
	base := inbox[:strings.LastIndex(inbox, ".")+1]
	replies, err := nc.Subscribe(base+"*.*", func(m *nats.Msg) { l.book.Observe(m) })
	if err != nil {
		t.Fatal(err)
	}
	_ = replies.SetPendingLimits(-1, -1)
	pubs, err := nc.Subscribe(wire.ReqSubject(wire.Normal, agent), func(m *nats.Msg) {
		l.book.Update(m.Header.Get(wire.HdrMsgID), func(e *harness.Entry[*calls]) { e.Req.attempts++ })
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = pubs.SetPendingLimits(-1, -1)
}

// caller sends requests under ids prefix-0, prefix-1, ... and retries each
// under the same id until it has a final outcome, as an agent would.
func (l *ledger) caller(t *testing.T, c *client.Client, prefix string) {
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-%d", prefix, n)
		// One request in four repeats a popular prompt: answered from the
		// cache or coalesced by a dispatcher, the rest run on a worker.
		prompt := "prompt " + id
		if n%4 == 3 {
			prompt = fmt.Sprintf("popular %d", (n/4)%6)
		}
		req := &api.GenerateRequest{Model: model, Prompt: prompt, Options: map[string]any{"temperature": 0}}
		l.book.Add(id, &calls{})
		giveUp := time.Now().Add(90 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			_, meta, err := c.Generate(ctx, req, client.RequestID(id))
			cancel()
			// The SDK returns no metadata when the publish was not
			// acknowledged (it retried it already under the same id).
			acked := meta != nil
			var herr *client.Error
			l.book.Update(id, func(e *harness.Entry[*calls]) {
				e.Req.calls++
				if acked {
					e.Acked = true
					if errors.Is(err, context.DeadlineExceeded) {
						e.Req.timeouts++
					}
				} else {
					e.Req.callsUnacked++
				}
				switch {
				case err == nil:
					e.Status, e.Code = http.StatusOK, ""
					e.Req.cache = meta.Cache
				case errors.As(err, &herr) && acked:
					e.Status, e.Code = harness.StatusOf(err)
				}
			})
			if err == nil || (herr != nil && acked) || t.Context().Err() != nil {
				break
			}
			if time.Now().After(giveUp) {
				t.Errorf("request %s: no outcome after 90s: %v", id, err)
				break
			}
		}
	}
}

// stopAndWait stops new requests and waits for the callers to have the
// outcomes of the requests they sent.
func (l *ledger) stopAndWait(t *testing.T, wg *sync.WaitGroup, total time.Duration) {
	t.Helper()
	close(l.stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(total):
		t.Fatalf("callers still waiting for outcomes after %v", total)
	}
	// A repeated reply would come within moments of the first; give it
	// a chance to show before counting.
	time.Sleep(time.Second)
}

type summary struct {
	sent, acked, answered, errors, lost, duplicated, unacked int
	attempts, calls, callsUnacked, timeouts                  int
	hits, coalesced                                          int
	codes                                                    map[string]int
	lostIDs, dupIDs                                          []string
	// slow describes the requests some call gave up waiting for.
	slow []string
}

func (l *ledger) summary() summary {
	c := l.book.Counts()
	s := summary{codes: map[string]int{}, sent: c.Sent, acked: c.Acked, unacked: c.Unacked, answered: c.Answered,
		errors: c.Errors, lost: c.Lost, duplicated: c.Duplicated, lostIDs: c.LostIDs}
	for _, e := range l.book.Entries() {
		s.attempts += e.Req.attempts
		s.calls += e.Req.calls
		s.callsUnacked += e.Req.callsUnacked
		s.timeouts += e.Req.timeouts
		if !e.Acked {
			continue
		}
		switch {
		case e.Status == http.StatusOK && e.Req.cache == wire.CacheHit:
			s.hits++
		case e.Status == http.StatusOK && e.Req.cache == wire.CacheCoalesced:
			s.coalesced++
		case e.Status != 0 && e.Status != http.StatusOK:
			s.codes[string(e.Code)]++
		}
		outcome := "none"
		if e.Status != 0 {
			outcome = fmt.Sprint(e.Status, " ", e.Code)
		}
		if e.Req.timeouts > 0 {
			s.slow = append(s.slow, fmt.Sprintf("%s: %d calls, outcome %s, replies [%s]", e.ID, e.Req.calls, outcome, strings.Join(e.Seen, "; ")))
		}
		if len(e.Replies) > 1 {
			s.dupIDs = append(s.dupIDs, fmt.Sprintf("%s: [%s]", e.ID, strings.Join(e.Seen, "; ")))
		}
	}
	sort.Strings(s.lostIDs)
	sort.Strings(s.dupIDs)
	return s
}

// node is one machine: a nats-server and the herd services next to it.
type node struct {
	name        string
	port, route int
	conf        string
	bin         string
	srv         *harness.Proc
	services    []*harness.Proc
}

func newNodes(t *testing.T, natsServer string, n int) []*node {
	t.Helper()
	ports := testbin.FreePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	dir := t.TempDir()
	nodes := make([]*node, n)
	for i := range n {
		nd := &node{name: fmt.Sprintf("n%d", i), port: ports[i], route: ports[n+i], bin: natsServer}
		nd.conf = filepath.Join(dir, nd.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: 8MB
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: herd
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, nd.name, nd.port, filepath.Join(dir, nd.name), nd.route, strings.Join(routes, ", "))
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = nd
	}
	return nodes
}

func (n *node) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// startServer starts (or restarts, on the same store) the node's server.
func (n *node) startServer(t *testing.T) {
	t.Helper()
	n.srv = harness.Start(t, &harness.Proc{Name: n.name, Path: n.bin, Args: []string{"-c", n.conf}, Ready: "Server is ready"})
	n.srv.WaitReady(t, 30*time.Second)
}

// service starts a herd binary on the node, connected to the node's server
// only: it learns the other servers from the cluster and fails over to
// them.
func (n *node) service(t *testing.T, env []string, path, name, ready string, args ...string) {
	t.Helper()
	p := harness.Start(t, &harness.Proc{Name: name, Path: path, Args: append([]string{"--nats", n.url(), "--http", ""}, args...), Env: env, Ready: ready})
	n.services = append(n.services, p)
}

func (n *node) serviceNames() string {
	var s []string
	for _, p := range n.services {
		s = append(s, p.Name)
	}
	return strings.Join(s, ", ")
}

// kill SIGKILLs the node's server and services at once, as a power loss.
func (n *node) kill() {
	all := append([]*harness.Proc{n.srv}, n.services...)
	for _, p := range all {
		_ = p.Signal(syscall.SIGKILL)
	}
	for _, p := range all {
		_ = p.Kill(30 * time.Second)
	}
}

func allURLs(nodes []*node) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	return strings.Join(urls, ",")
}

func connect(t *testing.T, urls, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

const model = "tiny"
