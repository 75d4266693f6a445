package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	batches     prometheus.Counter
	batchSize   prometheus.Histogram
	batchErrors prometheus.Counter
	deadLetters prometheus.Counter
	fallbacks   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_requests_total",
			Help: "Requests settled by the dispatcher, by priority and result (batched, hit, coalesced or an error code).",
		}, []string{"priority", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_rejected_total",
			Help: "Requests refused before running, by error code.",
		}, []string{"code"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_dispatcher_batches_total",
			Help: "Batches published to HERD_BATCH.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_dispatcher_batch_size",
			Help:    "Requests per published batch.",
			Buckets: []float64{1, 2, 4, 8, 12, 16, 32},
		}),
		batchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_dispatcher_batch_publish_errors_total",
			Help: "Batches that could not be published (their requests are redelivered).",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_dispatcher_dead_letters_total",
			Help: "Requests moved to HERD_DLQ.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_fallbacks_total",
			Help: "Requests routed to a fallback model because their model's breaker was open.",
		}, []string{"model", "fallback"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.rejected, m.batches, m.batchSize, m.batchErrors, m.deadLetters, m.fallbacks)
	}
	return m
}
