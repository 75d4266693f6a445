package optimizer

import "github.com/prometheus/client_golang/prometheus"

// metrics are the optimizer's Prometheus metrics.
type metrics struct {
	decisions    *prometheus.CounterVec
	breakerState *prometheus.GaugeVec
	events       *prometheus.CounterVec
	applyErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_optimizer_decisions_total",
			Help: "Decisions the optimizer made, by kind and the state they set.",
		}, []string{"kind", "to"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_optimizer_breaker_state",
			Help: "Each model's breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"model"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_optimizer_events_total",
			Help: "Metric events the optimizer consumed, by kind (call, req, bad).",
		}, []string{"kind"}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_optimizer_apply_errors_total",
			Help: "Decisions that could not be written to herd_control.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.breakerState, m.events, m.applyErrors)
	}
	return m
}
