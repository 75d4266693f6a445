package queuestats

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// values gathers c and returns its samples by "name/priority".
func values(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, lp := range m.GetLabel() {
				k += "/" + lp.GetValue()
			}
			if m.Gauge != nil {
				out[k] = m.GetGauge().GetValue()
			} else {
				out[k] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestCollect(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{AckWait: 5 * time.Second})
	_, js := srv.Connect(t)
	ctx := t.Context()
	publish := func(p wire.Priority) *jetstream.RawStreamMsg {
		t.Helper()
		ack, err := js.Publish(ctx, wire.ReqSubject(p, "a"), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		str, err := js.Stream(ctx, wire.StreamReq)
		if err != nil {
			t.Fatal(err)
		}
		m, err := str.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	low := publish(wire.Low)
	n1 := publish(wire.Normal)
	n2 := publish(wire.Normal)

	c := New(js, 0)
	now := n1.Time.Add(10 * time.Second)
	c.now = func() time.Time { return now }
	// The server counts a consumer's pending messages in its own time
	// after a publish is acknowledged (a goroutine signals the consumer),
	// so the figures are polled for, as a scrape would see them settle.
	check := func(want map[string]float64) {
		t.Helper()
		natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			got := values(t, c)
			for k, v := range want {
				if got[k] != v {
					return fmt.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
			return nil
		})
	}
	check(map[string]float64{
		"herd_queue_depth/high": 0, "herd_queue_depth/normal": 2, "herd_queue_depth/low": 1,
		"herd_queue_oldest_age_seconds/high":   0,
		"herd_queue_oldest_age_seconds/normal": 10, // n1, not the older low request
		"herd_queue_oldest_age_seconds/low":    now.Sub(low.Time).Seconds(),
		"herd_queue_redelivered/normal":        0,
		"herd_queue_stats_failures_total":      0,
	})

	cons, err := js.Consumer(ctx, wire.StreamReq, wire.ReqConsumerName(wire.Normal))
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() jetstream.Msg {
		t.Helper()
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			return m
		}
		t.Fatal("nothing fetched")
		return nil
	}
	// Delivered and not acknowledged: still queued.
	m := fetch()
	check(map[string]float64{"herd_queue_depth/normal": 2, "herd_queue_oldest_age_seconds/normal": 10})
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	check(map[string]float64{"herd_queue_depth/normal": 1, "herd_queue_oldest_age_seconds/normal": now.Sub(n2.Time).Seconds()})
	// Handed back and delivered again: redelivered.
	if err := fetch().Nak(); err != nil {
		t.Fatal(err)
	}
	m = fetch()
	check(map[string]float64{"herd_queue_depth/normal": 1, "herd_queue_redelivered/normal": 1})
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	check(map[string]float64{"herd_queue_depth/normal": 0, "herd_queue_oldest_age_seconds/normal": 0, "herd_queue_redelivered/normal": 0})
	if n := testutil.CollectAndCount(c); n != 10 {
		t.Errorf("series = %d, want 3 per priority and the failure counter", n)
	}
}

// TestCollectHangs: a scrape while JetStream does not answer returns
// within the timeout, without queue series, and counts the failures.
func TestCollectHangs(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect(t)
	// An API that takes every request and never answers.
	sub, err := nc.Subscribe("hang.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	js, err := jetstream.NewWithAPIPrefix(nc, "hang")
	if err != nil {
		t.Fatal(err)
	}
	c := New(js, 200*time.Millisecond)
	start := time.Now()
	got := values(t, c)
	if took := time.Since(start); took > time.Second {
		t.Errorf("scrape took %v with a 200ms timeout", took)
	}
	if got["herd_queue_stats_failures_total"] != 3 || len(got) != 1 {
		t.Errorf("got %v, want only 3 failures", got)
	}
}
