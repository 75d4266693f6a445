package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/reqmetrics"
)

type dispatcherConfig = dispatcher.Config

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func orderedAll() jetstream.OrderedConsumerConfig {
	return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
}

func overridesAckWait(d time.Duration) provision.Overrides {
	return provision.Overrides{AckWait: d}
}

// mustCounter returns the dispatcher's rejected counter for code.
func mustCounter(t *testing.T, s *stack, code string) prometheus.Collector {
	t.Helper()
	mfs, err := s.dreg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "herd_dispatcher_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == reqmetrics.OutcomeLabel && lp.GetValue() == code {
					v = m.GetCounter().GetValue()
				}
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	g.Set(v)
	return g
}
