package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestNumCtxRaised: prompts longer than a model's num_ctx are counted as
// truncated; the optimizer raises the model's window in herd_control, the
// worker runs the next requests in it, and truncations stop.
func TestNumCtxRaised(t *testing.T) {
	s := newStack(t, stackOpts{wcfg: func(c *worker.Config) { c.NumCtx = map[string]int{"tiny": 256} }})
	oc := optimizer.DefaultConfig()
	oc.Tick = 100 * time.Millisecond
	oc.Context.MinSamples, oc.Context.MinNumCtx, oc.Context.MaxNumCtx = 3, 256, 4096
	nc, _ := s.srv.Connect(t)
	opt, err := optimizer.New(t.Context(), oc, nc, s.log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = opt.Run(ctx) }()
	defer func() { cancel(); <-done }()

	c := s.client()
	long := strings.Repeat("word ", 300) // the fake counts about 300 prompt tokens
	ask := func(i int) {
		t.Helper()
		if _, _, err := c.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: fmt.Sprintf("%s %d", long, i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, js := s.srv.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	var chosen control.NumCtx
	natstest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		ask(i)
		i++
		e, err := kv.Get(t.Context(), control.NumCtxKey("tiny"))
		if err != nil {
			return fmt.Errorf("no num_ctx decision yet: %v", err)
		}
		return json.Unmarshal(e.Value(), &chosen)
	})
	if chosen.NumCtx <= 305 || chosen.Reason == "" {
		t.Fatalf("decision %+v: want a window above the 300-token prompts, with a reason", chosen)
	}
	// The worker applies it: later calls carry the new num_ctx.
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ask(i)
		i++
		reqs := s.fake.Requests("generate")
		var last struct {
			Options map[string]any `json:"options"`
		}
		_ = json.Unmarshal(reqs[len(reqs)-1], &last)
		if n, _ := last.Options["num_ctx"].(float64); int(n) != chosen.NumCtx {
			return fmt.Errorf("last call ran with num_ctx %v, want %d", last.Options["num_ctx"], chosen.NumCtx)
		}
		return nil
	})
	// Truncations stop: answers in the new window are not truncated, and
	// the ones before it were.
	ask(i)
	natstest.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		cons, err := js.OrderedConsumer(t.Context(), wire.StreamMetrics, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{wire.MetricsPrefix + ".req.tiny"}})
		if err != nil {
			return err
		}
		before, after := 0, 0
		for {
			m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
			if err != nil {
				break
			}
			var e events.Request
			if json.Unmarshal(m.Data(), &e) != nil || e.Dispatcher {
				continue
			}
			switch {
			case e.NumCtx == 256 && e.Truncated:
				before++
			case e.NumCtx == chosen.NumCtx && e.Truncated:
				return fmt.Errorf("an answer in the new window %d was truncated", chosen.NumCtx)
			case e.NumCtx == chosen.NumCtx:
				after++
			}
		}
		if before == 0 || after < 2 {
			return fmt.Errorf("%d truncated before, %d whole after; want some of each", before, after)
		}
		return nil
	})
	t.Logf("num_ctx raised from 256 to %d: %s", chosen.NumCtx, chosen.Reason)
}
