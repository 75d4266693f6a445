package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/worker"
)

// stack is herd (one dispatcher, one worker) on an in-process NATS server
// with a fake Ollama, wired as in internal/e2e, with the services'
// Prometheus registries kept so that tests can read what the server saw.
type stack struct {
	srv  *natstest.Server
	fake *ollamatest.Server
	disp *dispatcher.Dispatcher
	// dreg and wreg are the dispatcher's and the worker's registries.
	dreg, wreg *prometheus.Registry
}

// newStack starts the stack with a fake Ollama that takes latency per
// call; with capture, the dispatcher records every request in
// HERD_CAPTURE (with the time JetStream stored it).
func newStack(t *testing.T, latency time.Duration, capture bool) *stack {
	t.Helper()
	s := &stack{srv: natstest.Start(t), dreg: prometheus.NewRegistry(), wreg: prometheus.NewRegistry()}
	defs := s.srv.Provision(t, provision.Overrides{AckWait: 5 * time.Second})
	s.fake = ollamatest.New(t, ollamatest.WithLatency(latency))
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))

	nc, _ := s.srv.Connect(t)
	dc := dispatcher.DefaultConfig()
	dc.Capture = capture
	d, err := dispatcher.New(t.Context(), dc, nc, log, s.dreg)
	if err != nil {
		t.Fatal(err)
	}
	s.disp = d
	dctx, stopD := context.WithCancel(context.Background())
	dDone := make(chan struct{})
	go func() { defer close(dDone); _ = d.Run(dctx) }()

	wc := worker.DefaultConfig()
	wc.ID, wc.Slots = "w1", 4
	wc.PollInterval, wc.RetryBackoff = 50*time.Millisecond, 20*time.Millisecond
	wnc, err := nats.Connect(s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := ollama.NewClient(s.fake.URL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(t.Context(), wc, wnc, oc, defs, log, s.wreg)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopW := context.WithCancel(context.Background())
	wDone := make(chan struct{})
	go func() { defer close(wDone); _ = w.Run(wctx) }()

	t.Cleanup(func() {
		stopW()
		<-wDone
		wnc.Close()
		stopD()
		<-dDone
	})
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(d.Models()) == 0 {
			return fmt.Errorf("no worker registered")
		}
		return nil
	})
	return s
}

// counters sums a counter family of reg by the values of the labels in
// by (e.g. "priority", "result"), keyed "v1/v2".
func counters(t *testing.T, reg *prometheus.Registry, name string, by ...string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := ""
			for i, b := range by {
				if i > 0 {
					key += "/"
				}
				key += labels[b]
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}
