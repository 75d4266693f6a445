// Package reqmetrics holds the request metrics that every component giving
// a request its final outcome observes: the dispatcher (errors, cache hits,
// coalesced answers) and the workers (answers from Ollama). Each request
// has exactly one final outcome, so one series set counts every answer
// once, whichever component settled it.
//
// The dispatcher and the workers share one registry in `herd up`. New is
// therefore idempotent per registry: the first caller registers the
// collectors, later callers get the same ones back (client_golang's
// AlreadyRegisteredError), so nothing collides and nothing is counted twice.
// As separate processes each has its own registry; sum by (priority, model)
// across instances gives the whole.
package reqmetrics

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/wire"
)

// Buckets go from a cache hit (5 ms) to the longest generation a CPU runs
// (about 22 minutes: 5 ms doubled 18 times, 1310.72 s). The request and
// queue-wait histograms use them, and so does the worker's Ollama call
// latency.
var Buckets = prometheus.ExponentialBuckets(0.005, 2, 19)

// Metrics are the shared request metrics. Create them with New.
type Metrics struct {
	duration  *prometheus.HistogramVec
	queueWait *prometheus.HistogramVec
	requests  *prometheus.CounterVec
}

// New returns the request metrics registered on reg, or the ones already
// registered there by another component. A nil reg gives unregistered
// metrics. It panics when reg holds a different metric of the same name
// (a programming error, like prometheus.MustRegister).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_request_duration_seconds",
			Help:    "Time from a request's arrival in HERD_REQ to its final outcome (the answer's Herd-Total-Ms), by priority and model; one observation per answer, from the dispatcher or the worker that settled it.",
			Buckets: Buckets,
		}, []string{"priority", "model"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_queue_wait_seconds",
			Help:    "Time a request waited before it ran or was answered (the answer's Herd-Queue-Ms), by priority and model; one observation per answer.",
			Buckets: Buckets,
		}, []string{"priority", "model"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_requests_total",
			Help: "Final outcomes of requests by priority, model, op and outcome (ok or the error reply's code); one per request, from the dispatcher or the worker that settled it.",
		}, []string{"priority", "model", "op", OutcomeLabel}),
	}
	if reg != nil {
		m.duration = register(reg, m.duration)
		m.queueWait = register(reg, m.queueWait)
		m.requests = register(reg, m.requests)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, h C) C {
	err := reg.Register(h)
	if err == nil {
		return h
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// Observe records one final outcome of a request of priority for model
// that waited queue and was settled total after it arrived: an answer
// (code "") or an error reply with code.
func (m *Metrics) Observe(priority, model, op string, code wire.Code, queue, total time.Duration) {
	m.requests.WithLabelValues(priority, model, op, Outcome(code)).Inc()
	m.duration.WithLabelValues(priority, model).Observe(max(total, 0).Seconds())
	m.queueWait.WithLabelValues(priority, model).Observe(max(queue, 0).Seconds())
}
