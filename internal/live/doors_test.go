package live

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/events"
)

// TestDoors: the page shows requests per door. The HTTP doors' are the
// gateway's calls that asked herd (herd_gateway_requests_total without
// its lists and key refusals); the NATS door's every request outcome less
// those.
func TestDoors(t *testing.T) {
	c, err := New(nil, DefaultConfig(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	gw := prometheus.NewCounterVec(prometheus.CounterOpts{Name: gatewayRequests, Help: "x"}, []string{"door", "endpoint", "outcome"})
	reg.MustRegister(gw)
	gw.WithLabelValues(doorOllama, "generate", "ok").Add(7) // before the page started: not this span's
	c.CountDoors(reg)
	t0 := time.Now()
	c.tick(t0)
	for range 10 {
		c.observe(events.Request{Model: "m", Priority: "normal", Status: 200, TotalMs: 5}, t0)
	}
	gw.WithLabelValues(doorOllama, "generate", "ok").Add(3)
	gw.WithLabelValues(doorOpenAI, "chat", "queue_full").Add(2)
	gw.WithLabelValues(doorOllama, "tags", "ok").Add(5)
	gw.WithLabelValues(doorOllama, "chat", "unauthorized").Add(4)
	c.tick(t0.Add(time.Second))
	got := c.Snapshot().Doors
	want := []DoorRate{{DoorNATS, 2.5}, {doorOllama, 1.5}, {doorOpenAI, 1}} // over 2 seconds
	if len(got) != len(want) {
		t.Fatalf("doors %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("doors %+v, want %+v", got, want)
		}
	}
}
