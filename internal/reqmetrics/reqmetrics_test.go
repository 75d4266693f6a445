package reqmetrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSharedRegistry: a dispatcher and a worker on one registry (herd up)
// observe into the same series instead of colliding.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	dispatcher, worker := New(reg), New(reg)
	dispatcher.Observe("high", "tiny", "generate", "", 0, time.Millisecond)
	worker.Observe("high", "tiny", "generate", "", time.Millisecond, time.Second)
	if n := testutil.CollectAndCount(worker.duration); n != 1 {
		t.Fatalf("series = %d, want 1", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		c := mf.GetMetric()[0].GetHistogram().GetSampleCount()
		if mf.GetName() == "herd_requests_total" {
			c = uint64(mf.GetMetric()[0].GetCounter().GetValue())
		}
		if c != 2 {
			t.Errorf("%s count = %d, want 2", mf.GetName(), c)
		}
	}
}
