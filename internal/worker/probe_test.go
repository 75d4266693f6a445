package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/cancel"
	"github.com/sutazai/herd/internal/embedded"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

var errNotYet = errors.New("not yet")

// testProber probes quickly, so the tests take a fraction of the real
// timing; TestWatchCallersCancelsGoneCaller runs with the real one.
func testProber(nc *nats.Conn) prober {
	return prober{nc: nc, every: 50 * time.Millisecond, grace: 200 * time.Millisecond, flush: 5 * time.Second}
}

// connect returns a new plain connection (nats.go defaults: no
// reconnect needed here) closed when the test ends.
func connect(t *testing.T, s *natstest.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// requestAgent sends one nats.go request (its default multiplexed inbox
// "_INBOX.<nuid>.*") to subject and returns the request as the service
// received it and a channel with the agent's result.
func requestAgent(t *testing.T, agent, service *nats.Conn, subject string) (*nats.Msg, chan *nats.Msg) {
	t.Helper()
	sub, err := service.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := service.Flush(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	got := make(chan *nats.Msg, 1)
	go func() {
		m, err := agent.Request(subject, []byte("question"), 30*time.Second)
		if err != nil {
			m = &nats.Msg{Data: []byte("error: " + err.Error())}
		}
		got <- m
	}()
	req, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return req, got
}

// probed waits until each agent has received at least n probes: its
// wildcard inbox gets a probe only while it is subscribed, so each is a
// round that found it there (the first is the one that decides whether
// the call is probed at all). Sleeping instead raced with the prober's
// first round on a loaded machine: an agent that left before it made
// the watch end as not applied.
func probed(t *testing.T, n uint64, agents ...*nats.Conn) {
	t.Helper()
	natstest.CheckFor(t, 15*time.Second, 5*time.Millisecond, func() error {
		for _, a := range agents {
			if got := a.Stats().InMsgs; got < n {
				return fmt.Errorf("an agent got %d probes, want %d", got, n)
			}
		}
		return nil
	})
}

// TestProbeMuxAgentPresent: a nats.go agent waiting in Request is probed
// for a while: every probe finds its inbox subscription, the call is never
// given up, and the agent's Request returns the real answer sent after
// the probes, not a probe.
func TestProbeMuxAgentPresent(t *testing.T) {
	s := natstest.Start(t)
	agent, service := connect(t, s), connect(t, s)
	req, got := requestAgent(t, agent, service, "svc.present")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second) // 20 rounds
	defer cancel()
	if r := testProber(service).watch(ctx, []string{req.Reply}); r != probeEnded {
		t.Fatalf("watch of a present agent = %v, want probeEnded", r)
	}
	if err := req.Respond([]byte("the answer")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "the answer" || m.Header.Get(wire.HdrProbe) != "" {
			t.Fatalf("agent's Request returned %q (headers %v), want the answer", m.Data, m.Header)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent's Request did not return")
	}
}

// TestProbeSDKAgentPresent: herd's SDK waiting for a non-streaming answer
// is probed; the probes land on its inbox subscription, are dropped, and
// Generate returns the real answer.
func TestProbeSDKAgentPresent(t *testing.T) {
	s := natstest.Start(t)
	s.Provision(t, provision.Overrides{})
	agent, service := connect(t, s), connect(t, s)
	c, err := client.New(agent, client.WithAgent("sdk"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	sub, err := service.SubscribeSync(wire.ReqPrefix + ".>") // sees the JetStream publish
	if err != nil {
		t.Fatal(err)
	}
	if err := service.Flush(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   *api.GenerateResponse
		err error
	}
	got := make(chan result, 1)
	go func() {
		r, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "m", Prompt: "hi"})
		got <- result{r, err}
	}()
	req, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reply := req.Header.Get(wire.HdrReplyTo)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if r := testProber(service).watch(ctx, []string{reply}); r != probeEnded {
		t.Fatalf("watch of a present SDK agent = %v, want probeEnded", r)
	}
	m := nats.NewMsg(reply)
	m.Data = []byte(`{"model":"m","response":"the answer","done":true}`)
	m.Header.Set(wire.HdrStatus, "200")
	if err := service.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		if res.err != nil || res.r.Response != "the answer" {
			t.Fatalf("SDK Generate = %+v, %v; want the answer", res.r, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SDK Generate did not return")
	}
}

// TestProbeExactSubscriberNotProbed: an agent that subscribes only its
// exact reply subject (old-style request, natscli's `nats request`) has no
// interest in the sibling when the call starts: the call is not probed,
// so it can never be given up, and the agent receives nothing.
func TestProbeExactSubscriberNotProbed(t *testing.T) {
	s := natstest.Start(t)
	agent, service := connect(t, s), connect(t, s)
	inbox := agent.NewRespInbox()
	sub, err := agent.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := testProber(service).watch(t.Context(), []string{inbox}); r != probeNotApplied {
		t.Fatalf("watch of an exact subscriber = %v, want probeNotApplied", r)
	}
	t.Logf("decided not to probe in %v", time.Since(start))
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("exact subscriber received %q (headers %v), want nothing", m.Data, m.Header)
	}
}

// TestProbeAgentGone: a nats.go agent that closes its connection while
// its request runs is found gone after the grace, not before.
func TestProbeAgentGone(t *testing.T) {
	s := natstest.Start(t)
	agent, service := connect(t, s), connect(t, s)
	req, _ := requestAgent(t, agent, service, "svc.gone")
	p := testProber(service)
	res := make(chan probeResult, 1)
	go func() { res <- p.watch(t.Context(), []string{req.Reply}) }()
	probed(t, 6, agent) // probes running; the agent is there
	select {
	case r := <-res:
		t.Fatalf("watch ended with %v while the agent was there", r)
	default:
	}
	closed := time.Now()
	agent.Close()
	select {
	case r := <-res:
		took := time.Since(closed)
		t.Logf("agent found gone %v after it closed its connection (grace %v, probes every %v)", took, p.grace, p.every)
		if r != probeGone || took < p.grace {
			t.Fatalf("watch = %v after %v, want probeGone after at least %v", r, took, p.grace)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gone agent not noticed in 10s")
	}
}

// TestProbeSharedCall: a call serving two callers (an embed batch) is
// given up only when both are gone.
func TestProbeSharedCall(t *testing.T) {
	s := natstest.Start(t)
	a, b, service := connect(t, s), connect(t, s), connect(t, s)
	reqA, _ := requestAgent(t, a, service, "svc.a")
	reqB, _ := requestAgent(t, b, service, "svc.b")
	p := testProber(service)
	res := make(chan probeResult, 1)
	go func() { res <- p.watch(t.Context(), []string{reqA.Reply, reqB.Reply}) }()
	probed(t, 2, a, b)
	a.Close()
	select {
	case r := <-res:
		t.Fatalf("watch ended with %v while one caller was there", r)
	case <-time.After(5 * p.grace):
	}
	b.Close()
	select {
	case r := <-res:
		if r != probeGone {
			t.Fatalf("watch = %v, want probeGone", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("both callers gone, not noticed in 10s")
	}
}

// TestProbeCallerAlreadyGone: a caller gone before its call starts looks
// like an exact subscriber: not probed.
func TestProbeCallerAlreadyGone(t *testing.T) {
	s := natstest.Start(t)
	agent, service := connect(t, s), connect(t, s)
	req, _ := requestAgent(t, agent, service, "svc.early")
	n := s.NumClients()
	agent.Close()
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.NumClients() >= n {
			return errNotYet
		}
		return nil
	})
	if r := testProber(service).watch(t.Context(), []string{req.Reply}); r != probeNotApplied {
		t.Fatalf("watch = %v, want probeNotApplied", r)
	}
}

// TestWatchCallersCancelsGoneCaller: with the real timing (a probe a
// second, agentGoneAfter), a worker's running call whose non-streaming
// caller leaves is canceled and its request marked canceled (so it is
// answered 499); a streaming call is left to gone.go.
func TestWatchCallersCancelsGoneCaller(t *testing.T) {
	s := natstest.Start(t)
	agent, service := connect(t, s), connect(t, s)
	w := &Worker{nc: service, log: zaptest.NewLogger(t), cancels: cancel.New(time.Minute, 100)}
	req, _ := requestAgent(t, agent, service, "svc.worker")
	callCtx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	streamStop := w.watchCallers(t.Context(), []job.Item{{ID: "streaming", Reply: req.Reply, Stream: true}}, func() {
		mu.Lock()
		defer mu.Unlock()
		t.Error("a streaming call was canceled by probes")
	})
	defer streamStop()
	stop := w.watchCallers(callCtx, []job.Item{{ID: "r1", Reply: req.Reply}}, cancel)
	defer stop()
	probed(t, 2, agent) // the first probes find the agent
	if callCtx.Err() != nil || w.isCanceled("", "r1") {
		t.Fatal("call canceled while its caller was there")
	}
	closed := time.Now()
	agent.Close()
	select {
	case <-callCtx.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("call not canceled 15s after its caller left")
	}
	took := time.Since(closed)
	t.Logf("call canceled %v after its caller closed its connection (grace %v, probe every %v)", took, agentGoneAfter, probeEvery)
	if took < agentGoneAfter {
		t.Errorf("canceled after %v, before the grace %v", took, agentGoneAfter)
	}
	natstest.CheckFor(t, time.Second, 10*time.Millisecond, func() error {
		if !w.isCanceled("", "r1") {
			return errNotYet
		}
		return nil
	})
}

// TestProbeServerRestart: when the server restarts, the worker may be back
// before its callers (a longer reconnect wait): their absence right after
// the worker's reconnect does not count, and a caller back within the
// grace keeps its call.
func TestProbeServerRestart(t *testing.T) {
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:-1"
	cfg.DataDir = t.TempDir()
	cfg.SyncAlways = false
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url := s.ClientURL()
	cfg.Listen = strings.TrimPrefix(url, "nats://")
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	dial := func(wait time.Duration) *nats.Conn {
		nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(wait), nats.ReconnectJitter(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// The worker reconnects at once, the agent 1.3s after the server
	// went away: longer than the grace.
	service, agent := dial(20*time.Millisecond), dial(1300*time.Millisecond)
	req, _ := requestAgent(t, agent, service, "svc.restart")
	p := prober{nc: service, every: 50 * time.Millisecond, grace: 800 * time.Millisecond, flush: 5 * time.Second}
	res := make(chan probeResult, 1)
	go func() { res <- p.watch(t.Context(), []string{req.Reply}) }()
	probed(t, 4, agent)

	s.Shutdown()
	s.WaitForShutdown()
	if s, err = embedded.Start(cfg); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !agent.IsConnected() {
			return errNotYet
		}
		return nil
	})
	t.Logf("agent reconnected %v after the server restarted (worker: %v)", time.Since(restarted), service.IsConnected())
	select {
	case r := <-res:
		t.Fatalf("watch ended with %v while the agent was reconnecting", r)
	case <-time.After(2 * p.grace):
	}
	agent.Close()
	select {
	case r := <-res:
		if r != probeGone {
			t.Fatalf("watch = %v, want probeGone", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent gone after the restart, not noticed in 10s")
	}
}
