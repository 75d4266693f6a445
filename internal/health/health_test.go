package health_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/health"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// good is a snapshot of a healthy deployment at now.
func good() *health.Snapshot {
	return &health.Snapshot{
		At:  now,
		URL: "nats://x",
		Streams: []health.Stream{
			{Name: wire.StreamReq}, {Name: wire.StreamBatch}, {Name: wire.StreamDLQ},
		},
		Buckets: []health.Bucket{{Name: wire.BucketCache}, {Name: wire.BucketControl}},
		Consumers: []health.Consumer{
			{Stream: wire.StreamReq, Name: "req_high", Priority: "high", MaxAckPending: 100},
		},
		Workers: []registry.Registration{{ID: "w1", Models: map[string]string{"tiny": "d"}, Slots: 2, At: now.Add(-3 * time.Second)}},
	}
}

func TestEvaluate(t *testing.T) {
	th := health.DefaultThresholds()
	for _, tc := range []struct {
		name   string
		change func(s *health.Snapshot)
		want   health.Level
		check  string // the check that must have level want
		detail string // ... and say this
	}{
		{"healthy", func(*health.Snapshot) {}, health.OK, "workers", "w1 (tiny)"},
		{"unreachable", func(s *health.Snapshot) {
			*s = health.Snapshot{At: now, URL: "nats://x", ConnectError: "connection refused"}
		}, health.Down, "nats", "connection refused"},
		{"jetstream off", func(s *health.Snapshot) { s.JetStreamError = "JetStream is not enabled" }, health.Down, "jetstream", "not enabled"},
		{"stream missing", func(s *health.Snapshot) { s.Streams[1].Missing = true }, health.Down, "stream HERD_BATCH", "missing"},
		{"bucket missing", func(s *health.Snapshot) { s.Buckets[0].Missing = true }, health.Down, "bucket herd_cache", "missing"},
		{"consumer missing", func(s *health.Snapshot) { s.Consumers[0].Missing = true }, health.Degraded, "consumer HERD_REQ/req_high", "missing"},
		{"lag", func(s *health.Snapshot) { s.Consumers[0].Pending = 5000 }, health.Degraded, "consumer HERD_REQ/req_high", "lag above 1000"},
		{"ack pending saturated", func(s *health.Snapshot) { s.Consumers[0].AckPending = 95 }, health.Degraded, "consumer HERD_REQ/req_high", "near its limit 100"},
		{"redeliveries", func(s *health.Snapshot) { s.Consumers[0].Redelivered = 11 }, health.Degraded, "consumer HERD_REQ/req_high", "redeliveries above 10"},
		{"oldest shown", func(s *health.Snapshot) { s.Consumers[0].Pending, s.Consumers[0].Oldest = 3, now.Add(-90*time.Second) }, health.OK, "consumer HERD_REQ/req_high", "oldest 1m30s ago"},
		{"recent dead letter", func(s *health.Snapshot) { s.Streams[2].Msgs, s.Streams[2].LastTime = 2, now.Add(-time.Minute) }, health.Degraded, "dead letters", "2 in HERD_DLQ"},
		{"old dead letter", func(s *health.Snapshot) { s.Streams[2].Msgs, s.Streams[2].LastTime = 2, now.Add(-2*time.Hour) }, health.OK, "dead letters", "2 in HERD_DLQ"},
		{"no worker", func(s *health.Snapshot) { s.Workers = nil }, health.Degraded, "workers", "no live worker (0 stale)"},
		{"stale worker", func(s *health.Snapshot) { s.Workers[0].At = now.Add(-time.Minute) }, health.Degraded, "workers", "no live worker (1 stale)"},
		{"breaker open", func(s *health.Snapshot) {
			s.Breakers = []control.Breaker{{Model: "big", State: control.Open, Reason: "error rate 80%"}, {Model: "tiny", State: control.Closed}}
		}, health.Degraded, "breakers", "open: big (error rate 80%)"},
		{"breaker half open", func(s *health.Snapshot) { s.Breakers = []control.Breaker{{Model: "big", State: control.HalfOpen}} }, health.OK, "breakers", "half-open (probing): big"},
		{"ollama down", func(s *health.Snapshot) { s.Ollama = []health.Ollama{{URL: "http://o", Error: "connection refused"}} }, health.Degraded, "ollama http://o", "connection refused"},
		{"ollama ok", func(s *health.Snapshot) {
			s.Ollama = []health.Ollama{{URL: "http://o", Version: "0.6.5", Models: []string{"tiny"}}}
		}, health.OK, "ollama http://o", "models: tiny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.change(s)
			r := health.Evaluate(s, th)
			if r.Status != tc.want {
				t.Errorf("status %s, want %s; checks %+v", r.Status, tc.want, r.Checks)
			}
			for _, c := range r.Checks {
				if c.Name == tc.check {
					if c.Status != tc.want || !strings.Contains(c.Detail, tc.detail) {
						t.Errorf("check %s: %s %q, want %s containing %q", c.Name, c.Status, c.Detail, tc.want, tc.detail)
					}
					return
				}
			}
			t.Errorf("no check %q in %+v", tc.check, r.Checks)
		})
	}
}

func TestLevelJSON(t *testing.T) {
	b, err := json.Marshal(health.Check{Name: "x", Status: health.Degraded})
	if err != nil || !strings.Contains(string(b), `"status":"degraded"`) {
		t.Fatalf("%s %v", b, err)
	}
	var c health.Check
	if err := json.Unmarshal(b, &c); err != nil || c.Status != health.Degraded {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestGather(t *testing.T) {
	srv := natstest.Start(t)
	defs := srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	put := func(key string, v []byte) {
		t.Helper()
		if _, err := kv.Put(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	put(registry.Key("w1"), registry.Registration{ID: "w1", Models: map[string]string{"tiny": "sha"}, Slots: 4, CPUBudget: 2, At: at}.Marshal())
	put(control.BreakerKey("big"), control.Breaker{Model: "big", State: control.Open, Reason: "5 failures in a row", At: at}.Marshal())
	put("capture.enabled", []byte("on"))
	// A queued high request and a batch consumer with a pending batch.
	for range 3 {
		m := nats.NewMsg(wire.ReqSubject(wire.High, "agent"))
		m.Data = []byte(`{}`)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, wire.StreamBatch, defs.BatchConsumer("llama3.2:3b", wire.Normal)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, wire.BatchSubject("llama3.2:3b", wire.Normal), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, wire.DLQSubject(wire.Low, "agent"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	fake := ollamatest.New(t, ollamatest.WithModels("tiny"))

	g := &health.Gatherer{JS: js, URL: nc.ConnectedUrl(), Defs: defs, Ollama: []string{fake.URL}}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s := g.Gather(gctx)

	if s.JetStreamError != "" || len(s.Streams) != len(defs.Streams) || len(s.Buckets) != len(defs.Buckets) {
		t.Fatalf("snapshot %+v", s)
	}
	var high, batch *health.Consumer
	for i, c := range s.Consumers {
		switch {
		case c.Name == "req_high":
			high = &s.Consumers[i]
		case c.Stream == wire.StreamBatch:
			batch = &s.Consumers[i]
		}
	}
	if high == nil || high.Pending != 3 || high.Oldest.IsZero() {
		t.Errorf("req_high %+v, want 3 pending with an oldest time", high)
	}
	if batch == nil || batch.Model != "llama3.2:3b" || batch.Priority != "normal" || batch.Pending != 1 {
		t.Errorf("batch consumer %+v", batch)
	}
	if len(s.Workers) != 1 || s.Workers[0].ID != "w1" || len(s.Breakers) != 1 || s.Breakers[0].Model != "big" || s.Capture != "on" {
		t.Errorf("control: workers %+v breakers %+v capture %q", s.Workers, s.Breakers, s.Capture)
	}
	if len(s.Ollama) != 1 || s.Ollama[0].Error != "" || len(s.Ollama[0].Models) != 1 {
		t.Errorf("ollama %+v", s.Ollama)
	}

	r := health.Evaluate(s, health.DefaultThresholds())
	if r.Status != health.Degraded {
		t.Errorf("status %s, want degraded (breaker open, recent dead letter): %+v", r.Status, r.Checks)
	}

	var out bytes.Buffer
	if err := health.WriteStatus(&out, s, health.DefaultThresholds()); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"QUEUES", "high", "BATCHES", "llama3.2:3b normal", "WORKERS", "w1", "tiny", "BREAKERS", "big", "open", "herd_cache", "herd_results", "dead letters", "capture", "on"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
}

func TestGatherUnprovisioned(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	defs, err := provision.Load(provision.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	s := (&health.Gatherer{JS: js, Defs: defs}).Gather(t.Context())
	r := health.Evaluate(s, health.DefaultThresholds())
	if r.Status != health.Down {
		t.Fatalf("status %s, want down: %+v", r.Status, r.Checks)
	}
	for _, st := range s.Streams {
		if !st.Missing {
			t.Errorf("stream %s not reported missing", st.Name)
		}
	}
}
