package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
			Help: "HTTP requests to herd's doors by door (ollama-http, openai-http), endpoint and HTTP status (499: the caller left).",
		}, []string{"door", "endpoint", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_gateway_request_duration_seconds",
			Help:    "Time from an HTTP request to its last byte, by door and endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"door", "endpoint"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

func (m *metrics) observe(door, endpoint string, status int, start time.Time) {
	m.requests.WithLabelValues(door, endpoint, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(door, endpoint).Observe(time.Since(start).Seconds())
}
