package capture_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// stack is a dispatcher and one worker on an in-process NATS server with a
// fake Ollama (the wiring of internal/e2e's harness, cut down).
type stack struct {
	srv  *natstest.Server
	reg  *prometheus.Registry
	disp *dispatcher.Dispatcher
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{srv: natstest.Start(t), reg: prometheus.NewRegistry()}
	defs := s.srv.Provision(t, provision.Overrides{AckWait: 5 * time.Second})
	fake := ollamatest.New(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))

	nc, _ := s.srv.Connect(t)
	d, err := dispatcher.New(t.Context(), dispatcher.DefaultConfig(), nc, log, s.reg)
	if err != nil {
		t.Fatal(err)
	}
	s.disp = d
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { _ = d.Run(ctx) })

	wnc, _ := s.srv.Connect(t)
	oc, err := ollama.NewClient(fake.URL, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.RetryBackoff = "w1", 50*time.Millisecond, 20*time.Millisecond
	w, err := worker.New(t.Context(), wc, wnc, oc, defs, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = w.Run(ctx) })
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(d.Models()) == 0 {
			return errors.New("no worker registered")
		}
		return nil
	})
	return s
}

// metric returns the value of the dispatcher's unlabelled metric name.
func (s *stack) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// sent is a request as an agent sent it and the window in which herd
// stored it.
type sent struct {
	id, agent, model string
	priority         wire.Priority
	body             []byte
	headers          map[string]string
	before, after    time.Time
}

// TestSwitchChangesWhatIsRecorded: with capture off nothing is recorded;
// after herd_control's capture.enabled is set to "on" every request is,
// with its original time, id, priority, agent, model, op, body and
// replayed headers; after "off" nothing again.
func TestSwitchChangesWhatIsRecorded(t *testing.T) {
	s := newStack(t)
	nc, js := s.srv.Connect(t)
	c, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	control, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	setCapture := func(v string, want float64) {
		t.Helper()
		if _, err := control.Put(t.Context(), capture.KeyEnabled, []byte(v)); err != nil {
			t.Fatal(err)
		}
		natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if got := s.metric(t, "herd_capture_enabled"); got != want {
				return fmt.Errorf("herd_capture_enabled = %v after %q", got, v)
			}
			return nil
		})
	}
	n := 0
	send := func(p wire.Priority, agent, body string, opts ...client.CallOption) sent {
		t.Helper()
		n++
		r := sent{id: fmt.Sprintf("req-%d", n), agent: agent, priority: p, model: "tiny", body: []byte(body), before: time.Now()}
		opts = append(opts, client.At(p), client.Agent(agent), client.RequestID(r.id))
		if _, meta, err := c.Raw(t.Context(), r.body, opts...); err != nil || meta.Status != 200 {
			t.Fatalf("request %s: %+v, %v", r.id, meta, err)
		}
		r.after = time.Now()
		return r
	}
	batch := func(tag string) []sent {
		return []sent{
			send(wire.High, "planner", `{"model":"tiny","prompt":"plan `+tag+`","options":{"temperature":0}}`),
			send(wire.Normal, "writer", `{"model":"tiny","messages":[{"role":"user","content":"write `+tag+`"}]}`, client.Cache("off")),
			send(wire.Low, "indexer", `{"model":"tiny","input":["embed `+tag+`"]}`, client.Timeout(time.Minute)),
		}
	}

	if got := s.metric(t, "herd_capture_enabled"); got != 0 {
		t.Fatalf("capture on at start: %v", got)
	}
	batch("before")
	setCapture("on", 1)
	on := batch("during")
	// One more that herd refuses: it is still recorded, as the agent sent it.
	n++
	bad := sent{id: fmt.Sprintf("req-%d", n), agent: "writer", priority: wire.Normal, body: []byte(`not json`), before: time.Now()}
	if _, _, err := c.Raw(t.Context(), bad.body, client.At(wire.Normal), client.Agent("writer"), client.RequestID(bad.id)); err == nil {
		t.Fatal("a body that is not JSON was answered")
	}
	bad.after = time.Now()
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := s.metric(t, "herd_capture_records_total"); got != 4 {
			return fmt.Errorf("herd_capture_records_total = %v, want 4", got)
		}
		return nil
	})
	setCapture("off", 0)
	batch("after")

	var recs []capture.Record
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		recs = nil
		err := capture.ReadStream(t.Context(), js, time.Time{}, time.Time{}, func(r capture.Record) error {
			recs = append(recs, r)
			return nil
		})
		if err == nil && len(recs) != 4 {
			err = fmt.Errorf("%d records, want 4", len(recs))
		}
		return err
	})
	on[1].headers = map[string]string{wire.HdrCache: "off"}
	on[2].headers = map[string]string{wire.HdrTimeout: "1m0s"}
	ops := []string{"generate", "chat", "embed"}
	for i, want := range on {
		r := recs[i]
		if r.ID != want.id || r.Agent != want.agent || r.Priority != want.priority || r.Model != want.model || r.Op != ops[i] || r.Raw {
			t.Errorf("record %d = %+v, want %+v", i, r, want)
		}
		if !bytes.Equal(r.Payload(), want.body) {
			t.Errorf("record %d body %s, want %s", i, r.Payload(), want.body)
		}
		if fmt.Sprint(r.Headers) != fmt.Sprint(want.headers) {
			t.Errorf("record %d headers %v, want %v", i, r.Headers, want.headers)
		}
		// The time is when JetStream stored the request, not when the
		// record was written.
		if r.Time.Before(want.before.Add(-time.Millisecond)) || r.Time.After(want.after) {
			t.Errorf("record %d time %v outside its request's [%v, %v]", i, r.Time, want.before, want.after)
		}
	}
	r := recs[3]
	if r.ID != bad.id || !r.Raw || string(r.Payload()) != "not json" || r.Model != "" || r.Time.Before(bad.before.Add(-time.Millisecond)) || r.Time.After(bad.after) {
		t.Errorf("record of a bad body = %+v (payload %q)", r, r.Payload())
	}
	if s.metric(t, "herd_capture_dropped_total") != 0 {
		t.Error("records dropped")
	}

	// A JSON-lines round trip keeps every field.
	var b bytes.Buffer
	if err := capture.WriteJSONL(&b, recs); err != nil {
		t.Fatal(err)
	}
	var back []capture.Record
	if err := capture.ReadJSONL(&b, func(r capture.Record) error { back = append(back, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(back) != len(recs) {
		t.Fatalf("read back %d records, wrote %d", len(back), len(recs))
	}
	for i := range recs {
		if !back[i].Time.Equal(recs[i].Time) || back[i].ID != recs[i].ID || !bytes.Equal(back[i].Payload(), recs[i].Payload()) {
			t.Errorf("record %d read back as %+v, was %+v", i, back[i], recs[i])
		}
	}
}

func TestReadJSONLNamesBadLine(t *testing.T) {
	good := `{"t":"2026-03-01T12:00:00Z","id":"a","priority":"high","agent":"x","body":{"model":"m","prompt":"p"}}`
	for _, tc := range []struct {
		name, text, want string
	}{
		{"not json", good + "\n\n{oops\n", "line 3"},
		{"no priority", good + "\n" + strings.Replace(good, `"high"`, `"urgent"`, 1) + "\n", "line 2"},
		{"no time", strings.Replace(good, `"t":"2026-03-01T12:00:00Z",`, "", 1), "line 1"},
		// herd capture import and herd replay read with the same rules:
		// an agent that is not one subject token cannot be replayed.
		{"agent not a token", good + "\n" + strings.Replace(good, `"agent":"x"`, `"agent":"a.b"`, 1), `line 2: bad capture record: agent "a.b"`},
		{"no body", strings.Replace(good, `,"body":{"model":"m","prompt":"p"}`, "", 1), "line 1: bad capture record: no body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			err := capture.ReadJSONL(strings.NewReader(tc.text), func(capture.Record) error { n++; return nil })
			if !errors.Is(err, capture.ErrBadRecord) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrBadRecord at %s", err, tc.want)
			}
		})
	}
}

// TestRecorderNeverBlocks: with no room for another record in flight, a
// record is dropped and counted, not waited for.
func TestRecorderNeverBlocks(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	rec, err := capture.NewRecorder(nc, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &capture.Record{Time: time.Now(), ID: "a", Priority: wire.High, Agent: "x", Body: []byte(`{}`)}
	start := time.Now()
	for range 1000 {
		rec.Record(r)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1000 records took %v", d)
	}
	if rec.Written()+rec.Dropped() != 1000 || rec.Dropped() == 0 {
		t.Fatalf("written %d, dropped %d", rec.Written(), rec.Dropped())
	}
	rec.SetEnabled(false)
	rec.Record(r)
	if rec.Written()+rec.Dropped() != 1000 {
		t.Fatal("recorded while off")
	}
}
