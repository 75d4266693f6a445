package dispatcher

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/queuestats"
	"github.com/sutazai/herd/internal/reqmetrics"
	"github.com/sutazai/herd/internal/wire"
)

// Cache results (herd_cache_results_total's result label), decided here
// for every request that passed admission.
const (
	// cacheHit: answered from herd_cache (Herd-Cache: hit).
	cacheHit = "hit"
	// cacheCoalesced: answered with the outcome of an identical request
	// that ran (Herd-Cache: coalesced).
	cacheCoalesced = "coalesced"
	// cacheMiss: sent to a worker in a batch, cacheable or not; its answer
	// says Herd-Cache: miss.
	cacheMiss = "miss"
)

type metrics struct {
	requests    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	batches     prometheus.Counter
	batchSize   prometheus.Histogram
	batchErrors prometheus.Counter
	deadLetters prometheus.Counter
	resultsFull prometheus.Counter
	// followersCapped counts identical requests that ran on their own
	// because their priority held its share of followers.
	followersCapped prometheus.Counter
	fallbacks       *prometheus.CounterVec
	cache           *prometheus.CounterVec
	req             *reqmetrics.Metrics
}

// newMetrics registers the dispatcher's metrics on reg, with the shared
// request histograms (internal/reqmetrics) and the HERD_REQ queue collector
// (internal/queuestats) reading through js. A nil reg registers nothing.
func newMetrics(reg prometheus.Registerer, js jetstream.JetStream) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_requests_total",
			Help: "Requests that left the dispatcher, by priority and outcome: an error code (the error reply's code), hit or coalesced (answered from the cache or with an identical request's outcome), batched (handed to a worker), resent or already_answered (a repeat given its stored outcome).",
		}, []string{"priority", reqmetrics.OutcomeLabel}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_rejected_total",
			Help: "Requests refused before running, by error code.",
		}, []string{reqmetrics.OutcomeLabel}),
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
		followersCapped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_dispatcher_followers_capped_total", Help: "Identical requests run on their own instead of waiting for their leader, because their priority already held a quarter of its consumer's max_ack_pending in followers.",
		}),
		resultsFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_dispatcher_results_full_total", Help: "Outcomes sent without being stored because herd_results was full (no recovery by id for them): raise its max_bytes or lower queue.results_ttl.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_dispatcher_dead_letters_total",
			Help: "Requests moved to HERD_DLQ.",
		}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_dispatcher_fallbacks_total",
			Help: "Requests routed to a fallback model because their model's breaker was open.",
		}, []string{"model", "fallback"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_cache_results_total",
			Help: "Requests past admission by cache result: hit (answered from herd_cache), coalesced (answered with an identical request's outcome) or miss (sent to a worker).",
		}, []string{"result"}),
		req: reqmetrics.New(reg),
	}
	for _, r := range []string{cacheHit, cacheCoalesced, cacheMiss} {
		m.cache.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.rejected, m.batches, m.batchSize, m.batchErrors, m.deadLetters, m.resultsFull, m.followersCapped, m.fallbacks, m.cache)
		// Several dispatchers on one registry report the queues once.
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(queuestats.New(js, 0)); err != nil && !errors.As(err, &are) {
			panic(err)
		}
	}
	return m
}

// settled records the final outcome the dispatcher gave it at now; result
// is a cache result or an error code.
func (m *metrics) settled(it job.Item, result string, now time.Time) {
	if result == cacheHit || result == cacheCoalesced {
		m.cache.WithLabelValues(result).Inc()
	}
	model := it.Model
	if result == string(wire.CodeInvalidRequest) || result == string(wire.CodeModelNotFound) {
		model = "" // chosen by the caller: not a label value
	}
	d := now.Sub(it.Received)
	var code wire.Code
	if result != cacheHit && result != cacheCoalesced {
		code = wire.Code(result)
	}
	m.req.Observe(string(it.Priority), model, string(it.Op), code, d, d)
}
