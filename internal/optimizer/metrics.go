package optimizer

import "github.com/prometheus/client_golang/prometheus"

// metrics are the optimizer's Prometheus metrics.
type metrics struct {
	decisions    *prometheus.CounterVec
	breakerState *prometheus.GaugeVec
	events       *prometheus.CounterVec
	applyErrors  prometheus.Counter
	budgetSlots  *prometheus.GaugeVec
	budgetTotal  prometheus.Gauge
	instances    prometheus.Gauge
	keepAlive    *prometheus.GaugeVec
	unloads      *prometheus.CounterVec
	preloads     *prometheus.CounterVec
	memoryUse    *prometheus.GaugeVec
	repeats      *prometheus.CounterVec
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
		budgetSlots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_optimizer_budget_slots",
			Help: "Each model's share of the fleet's slots in the allocation (herd_control budget).",
		}, []string{"model"}),
		budgetTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_optimizer_budget_total_slots",
			Help: "The fleet's slots the allocation shares: the live workers' slots.",
		}),
		instances: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_optimizer_recommended_instances",
			Help: "Worker instances the optimizer recommends to an external autoscaler (herd_control instances).",
		}),
		keepAlive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_optimizer_keep_alive_seconds",
			Help: "Each model's keep_alive as decided from its inter-arrival times (negative: kept loaded).",
		}, []string{"model"}),
		unloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_optimizer_unloads_total",
			Help: "Models the optimizer decided to unload because their host's memory was tight.",
		}, []string{"model"}),
		preloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_optimizer_preloads_total",
			Help: "Models the optimizer decided to load on a worker ahead of their next expected burst of requests (their arrival rhythm).",
		}, []string{"model"}),
		memoryUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_optimizer_memory_use_ratio",
			Help: "Share of each worker host's memory in use, as the worker last reported it.",
		}, []string{"worker"}),
		repeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_optimizer_breaker_repeated_failures_total",
			Help: "Failed calls not counted for their model's breaker because the same request already failed within the window (its retries and redeliveries).",
		}, []string{"model"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.breakerState, m.events, m.applyErrors,
			m.budgetSlots, m.budgetTotal, m.instances, m.keepAlive, m.unloads, m.preloads, m.memoryUse, m.repeats)
	}
	return m
}
