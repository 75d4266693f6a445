package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/reqmetrics"
	"github.com/sutazai/herd/internal/wire"
)

// The doors the gateway serves, the values of the door label.
const (
	DoorOllama = "ollama-http"
	DoorOpenAI = "openai-http"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_gateway_requests_total",
			Help: "HTTP requests to herd's doors by door (ollama-http, openai-http), endpoint and outcome (ok, or the error's code: queue_full, ..., unauthorized, forbidden; canceled when the caller left).",
		}, []string{"door", "endpoint", reqmetrics.OutcomeLabel}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_gateway_request_duration_seconds",
			Help:    "Time from an HTTP request to its last byte, by door and endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200},
		}, []string{"door", "endpoint"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// observe records an HTTP request to door's endpoint that started at start
// and ended in an answer (code "") or an error with code.
func (m *metrics) observe(door, endpoint string, code wire.Code, start time.Time) {
	m.requests.WithLabelValues(door, endpoint, reqmetrics.Outcome(code)).Inc()
	m.duration.WithLabelValues(door, endpoint).Observe(time.Since(start).Seconds())
}
