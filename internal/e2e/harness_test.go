package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// stack is herd on one in-process NATS server with a fake (or a real) Ollama.
type stack struct {
	t         *testing.T
	srv       *natstest.Server
	defs      *provision.Definitions
	fake      *ollamatest.Server // nil when ollamaURL is a real Ollama
	ollamaURL string
	log       *zap.Logger
	dreg      *prometheus.Registry
	disp      *dispatcher.Dispatcher
	stopD     context.CancelFunc
	dDone     chan struct{}
	mu        sync.Mutex
	workers   []*runningWorker
	dcfg      dispatcher.Config
}

// startDispatcher starts the dispatcher.
func (s *stack) startDispatcher() {
	s.t.Helper()
	nc, _ := s.srv.Connect(s.t)
	s.dreg = prometheus.NewRegistry()
	d, err := dispatcher.New(s.t.Context(), s.dcfg, nc, s.log, s.dreg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.disp = d
	ctx, cancel := context.WithCancel(context.Background())
	s.stopD, s.dDone = cancel, make(chan struct{})
	go func() { defer close(s.dDone); _ = d.Run(ctx) }()
}

type runningWorker struct {
	w      *worker.Worker
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

type stackOpts struct {
	overrides provision.Overrides
	dcfg      func(*dispatcher.Config)
	wcfg      func(*worker.Config)
	fakeOpts  []ollamatest.Option
	workers   int
	// noWorkers starts no worker (a dispatcher alone, as at start-up or
	// while every worker restarts).
	noWorkers bool
	quiet     bool
	// lateDispatcher leaves the dispatcher to be started by startDispatcher.
	lateDispatcher bool
	// ollamaURL points the workers at a real Ollama instead of the fake.
	ollamaURL string
	// logger replaces the test logger.
	logger *zap.Logger
}

func newStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	s := &stack{t: t, srv: natstest.Start(t)}
	if o.overrides.AckWait == 0 {
		// herd's default: a test that needs redelivery sooner sets its own.
		// A short ack wait under a loaded CI machine redelivers requests a
		// busy dispatcher has not acknowledged yet, and the ledger then
		// sees a few repeated answers.
		o.overrides.AckWait = 30 * time.Second
	}
	s.defs = s.srv.Provision(t, o.overrides)
	s.ollamaURL = o.ollamaURL
	if s.ollamaURL == "" {
		s.fake = ollamatest.New(t, o.fakeOpts...)
		s.ollamaURL = s.fake.URL
	}
	switch {
	case o.logger != nil:
		s.log = o.logger
	case o.quiet:
		s.log = zap.NewNop()
	default:
		s.log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	s.dcfg = dispatcher.DefaultConfig()
	if o.dcfg != nil {
		o.dcfg(&s.dcfg)
	}
	s.stopD, s.dDone = func() {}, make(chan struct{})
	close(s.dDone)
	if !o.lateDispatcher {
		s.startDispatcher()
	}
	if o.workers == 0 && !o.noWorkers {
		o.workers = 1
	}
	for i := range o.workers {
		wc := worker.DefaultConfig()
		wc.ID = "w" + string(rune('1'+i))
		wc.PollInterval = 50 * time.Millisecond
		wc.RetryBackoff = 20 * time.Millisecond
		if o.wcfg != nil {
			o.wcfg(&wc)
		}
		s.startWorker(wc)
	}
	t.Cleanup(s.stop)
	if !o.lateDispatcher && !o.noWorkers {
		s.waitModels()
	}
	return s
}

// waitModels waits until the dispatcher knows the workers' models, so
// cache keys carry the model digest from the first request on.
func (s *stack) waitModels() {
	s.t.Helper()
	natstest.CheckFor(s.t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(s.disp.Models()) == 0 {
			return fmt.Errorf("no worker registered")
		}
		return nil
	})
}

// waitRegistered waits until a worker registered in herd_control, for a
// test that starts its dispatcher late: requests it takes before any
// registration wait for a worker, and are batched apart from the others.
func (s *stack) waitRegistered() {
	s.t.Helper()
	_, js := s.srv.Connect(s.t)
	kv, err := js.KeyValue(s.t.Context(), wire.BucketControl)
	if err != nil {
		s.t.Fatal(err)
	}
	natstest.CheckFor(s.t, 30*time.Second, 20*time.Millisecond, func() error {
		keys, err := kv.ListKeysFiltered(s.t.Context(), registry.KeyPrefix+">")
		if err != nil {
			return err
		}
		for range keys.Keys() {
			return nil
		}
		return fmt.Errorf("no worker registered")
	})
}

func (s *stack) startWorker(wc worker.Config) *runningWorker {
	s.t.Helper()
	nc, err := nats.Connect(s.srv.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	oc, err := ollama.NewClient(s.ollamaURL, time.Minute)
	if err != nil {
		s.t.Fatal(err)
	}
	w, err := worker.New(s.t.Context(), wc, nc, oc, s.defs, s.log, prometheus.NewRegistry())
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{w: w, nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(rw.done); _ = w.Run(ctx) }()
	s.mu.Lock()
	s.workers = append(s.workers, rw)
	s.mu.Unlock()
	return rw
}

// kill stops a worker the way a crash would: its connection drops first, so
// nothing it holds is acknowledged or handed back.
func (rw *runningWorker) kill() {
	rw.nc.Close()
	rw.cancel()
	<-rw.done
}

func (s *stack) stop() {
	s.mu.Lock()
	ws := s.workers
	s.mu.Unlock()
	for _, rw := range ws {
		rw.cancel()
	}
	for _, rw := range ws {
		<-rw.done
		rw.nc.Close()
	}
	s.stopD()
	<-s.dDone
}

// client returns an SDK client on its own connection.
func (s *stack) client(opts ...client.Option) *client.Client {
	s.t.Helper()
	nc, err := nats.Connect(s.srv.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	c, err := client.New(nc, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}
