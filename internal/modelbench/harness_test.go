package modelbench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/worker"
)

// testHerd is herd (dispatcher and one worker) on an in-process NATS
// server, in front of a fake or a real Ollama, with a bench runner.
type testHerd struct {
	srv    *natstest.Server
	js     jetstream.JetStream
	runner *Runner
}

// startHerd starts herd for one test with its workers on ollamaURL; wcfg
// adjusts the worker configuration. Everything stops when the test ends.
func startHerd(t *testing.T, ollamaURL string, wcfg func(*worker.Config)) *testHerd {
	t.Helper()
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{AckWait: 5 * time.Second})
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))

	nc, js := srv.Connect(t)
	d, err := dispatcher.New(t.Context(), dispatcher.DefaultConfig(), nc, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, d.Run)

	wc := worker.DefaultConfig()
	wc.ID = "w1"
	wc.PollInterval = 50 * time.Millisecond
	wc.RetryBackoff = 20 * time.Millisecond
	if wcfg != nil {
		wcfg(&wc)
	}
	oc, err := ollama.NewClient(ollamaURL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wnc, _ := srv.Connect(t)
	w, err := worker.New(t.Context(), wc, wnc, oc, defs, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, w.Run)

	cnc, _ := srv.Connect(t)
	hc, err := client.New(cnc, client.WithAgent("bench"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hc.Close() })
	h := &testHerd{srv: srv, js: js, runner: NewRunner(hc, js, log)}
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(d.Models()) == 0 {
			return errors.New("the dispatcher knows no worker yet")
		}
		return nil
	})
	return h
}

// run runs f until the test ends; the test waits for it to return.
func run(t *testing.T, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// store opens the bench store.
func (h *testHerd) store(t *testing.T) *Store {
	t.Helper()
	st, err := OpenStore(t.Context(), h.js)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startRealOllama starts the pinned Ollama with herd-tiny for one test. It
// skips the test when the binary is absent, unless HERD_REQUIRE_OLLAMA is
// set (harness.Ollama).
func startRealOllama(t *testing.T) *managed.Instance {
	t.Helper()
	return harness.Ollama(t, managed.Config{Dir: t.TempDir(), TestModels: []string{"herd-tiny"}})
}
