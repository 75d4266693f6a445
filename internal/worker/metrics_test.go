package worker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// TestLatencyBucketsReachLongCalls: a CPU generation of 15 minutes lands
// in a finite bucket of every latency histogram the worker observes (the
// Ollama call, the request, its stages), not only in +Inf, and buckets
// reach at least 10 minutes.
func TestLatencyBucketsReachLongCalls(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := newMetrics(reg, "w1")
	long := 15 * time.Minute
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	it := job.Item{ID: "a=1", Priority: wire.Low, Op: request.OpGenerate, Received: t0, Pulled: t0}
	m.observeCall("herd-tiny", "generate", "", long)
	m.settled("herd-tiny", it, "", t0, t0.Add(long), 10, 10)
	m.observeStages(it, t0, t0, t0, t0.Add(long), t0.Add(long))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"herd_worker_ollama_call_seconds": false, "herd_request_duration_seconds": false, "herd_queue_wait_seconds": true, "herd_worker_stage_seconds": false}
	for _, mf := range mfs {
		if _, ok := want[mf.GetName()]; !ok {
			continue
		}
		delete(want, mf.GetName())
		for _, s := range mf.GetMetric() {
			h := s.GetHistogram()
			bs := h.GetBucket()
			if top := bs[len(bs)-1].GetUpperBound(); top < (10 * time.Minute).Seconds() {
				t.Errorf("%s: top bucket %gs, want >= 600s", mf.GetName(), top)
			}
			// The largest observation of the series is counted in a
			// finite bucket: the top one holds every sample.
			if c := bs[len(bs)-1].GetCumulativeCount(); c != h.GetSampleCount() {
				t.Errorf("%s %v: %d of %d samples beyond the top bucket", mf.GetName(), s.GetLabel(), h.GetSampleCount()-c, h.GetSampleCount())
			}
		}
	}
	for name := range want {
		t.Errorf("%s not gathered", name)
	}
}
