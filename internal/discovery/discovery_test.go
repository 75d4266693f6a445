package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/natstest"
)

// TestRegister: a registered process answers its status with its request
// counters and the $SRV ping; once its context ends it is gone.
func TestRegister(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect(t)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herd_worker_requests_total", Help: "x"}, []string{"model"})
	reg.MustRegister(c)
	c.WithLabelValues("a").Add(2)
	c.WithLabelValues("b").Add(3)
	ctx, cancel := context.WithCancel(t.Context())
	if err := discovery.Register(ctx, nc, discovery.Worker.With("worker", "w1"), reg); err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(discovery.StatusSubject("worker"), nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st discovery.Status
	if err := json.Unmarshal(m.Data, &st); err != nil || st.Service != "herd-worker" || st.ID == "" ||
		st.Metadata["worker"] != "w1" || st.Counters["worker_requests_total"] != 5 {
		t.Fatalf("status %s: %+v, %v", m.Data, st, err)
	}
	if _, err := nc.Request("$SRV.PING.herd-worker", nil, 2*time.Second); err != nil {
		t.Fatalf("ping: %v", err)
	}
	cancel()
	natstest.CheckFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		if _, err := nc.Request("$SRV.PING.herd-worker", nil, 100*time.Millisecond); !errors.Is(err, nats.ErrNoResponders) {
			return errors.New("still answering after its context ended")
		}
		return nil
	})
}
