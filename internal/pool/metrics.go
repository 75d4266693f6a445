package pool

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	instances prometheus.Gauge
	target    prometheus.Gauge
	changes   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		instances: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_pool_instances", Help: "Worker instances the pool runs on this host, each with its own Ollama on its own cores.",
		}),
		target: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_pool_target_instances", Help: "Worker instances the pool means to run: the optimizer's instances decision within the cores and the bounds, or the fixed count.",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_pool_changes_total", Help: "Instances started, stopped (drained) and failed to start.",
		}, []string{"action"}),
	}
	if reg != nil {
		reg.MustRegister(m.instances, m.target, m.changes)
	}
	return m
}
