package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/version"
	"github.com/sutazai/herd/internal/wire"
)

// Service describes one herd process for discovery.
type Service struct {
	// Role is dispatcher, worker or optimizer: the service is herd-<Role>
	// and its status endpoint herd.status.<Role>.
	Role string
	// Description is one line for `nats micro ls`.
	Description string
	// Subjects names the subjects the role serves, by what they are for
	// ("ask": "herd.ask.<priority>.<agent>"); they go into the metadata.
	Subjects map[string]string
	// Metadata is more to show (a worker's id).
	Metadata map[string]string
	// Counters are the Prometheus counters (names) whose totals the
	// stats and the status answer carry, summed over their labels.
	Counters []string
}

// Name returns the micro service name of role: herd-<role>.
func Name(role string) string { return "herd-" + role }

// StatusSubject returns the status endpoint subject of role.
func StatusSubject(role string) string { return wire.StatusPrefix + "." + role }

// The roles' descriptions.
var (
	// Dispatcher is the dispatcher's service.
	Dispatcher = Service{
		Role:        "dispatcher",
		Description: "herd dispatcher: takes requests, answers cache hits, coalesces, publishes batches",
		Subjects: map[string]string{
			"requests": wire.ReqPrefix + ".<priority>.<agent> (JetStream HERD_REQ)",
			"ask":      wire.AskPrefix + ".<priority>.<agent>",
			"lookup":   wire.LookupPrefix + ".<agent>.<id>",
			"cancel":   wire.CancelPrefix + ".<agent>.<id>",
		},
		Counters: []string{"herd_dispatcher_requests_total", "herd_dispatcher_rejected_total", "herd_dispatcher_batches_total", "herd_cache_results_total"},
	}
	// Worker is a worker's service.
	Worker = Service{
		Role:        "worker",
		Description: "herd worker: runs batches on Ollama within its CPU budget",
		Subjects: map[string]string{
			"batches": wire.BatchPrefix + ".<model>.<priority> (JetStream HERD_BATCH)",
			"cancel":  wire.CancelPrefix + ".<agent>.<id>",
		},
		Counters: []string{"herd_worker_requests_total", "herd_worker_batches_total", "herd_worker_ollama_calls_total"},
	}
	// Optimizer is the optimizer's service.
	Optimizer = Service{
		Role:        "optimizer",
		Description: "herd optimizer: breakers, budget, num_ctx and warmth from HERD_METRICS",
		Subjects: map[string]string{
			"metrics":   wire.MetricsPrefix + ".> (JetStream HERD_METRICS)",
			"decisions": wire.EventsPrefix + ".<kind>.<model>",
		},
		Counters: []string{"herd_optimizer_events_total", "herd_optimizer_decisions_total"},
	}
	// Gateway is an HTTP gateway's service (internal/gateway): a client
	// of the ask door, so its subjects are the ones it calls.
	Gateway = Service{
		Role:        "gateway",
		Description: "herd gateway: Ollama's HTTP API and the OpenAI API over herd's ask door",
		Subjects: map[string]string{
			"ask":    wire.AskPrefix + ".<priority>.<agent> (called)",
			"cancel": wire.CancelPrefix + ".<agent>.<id> (called)",
			"models": wire.ModelsSubject + " (called)",
		},
		Counters: []string{"herd_gateway_requests_total"},
	}
)

// With returns s with the metadata key set to value.
func (s Service) With(key, value string) Service {
	m := make(map[string]string, len(s.Metadata)+1)
	for k, v := range s.Metadata {
		m[k] = v
	}
	m[key] = value
	s.Metadata = m
	return s
}

// Status is the status endpoint's answer and the endpoint's stats data.
type Status struct {
	Service string `json:"service"`
	Version string `json:"version"`
	// ID is the micro instance id, as `nats micro info` shows it.
	ID       string            `json:"id"`
	Started  time.Time         `json:"started"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Counters are the process's request counters by name.
	Counters map[string]float64 `json:"counters,omitempty"`
}

// Register adds s as a micro service on nc, answering until ctx ends (or
// nc closes). reg is the process's registry; when it is also a
// prometheus.Gatherer (ops.NewRegistry's is) the stats carry s.Counters.
// It returns an error when the service cannot be added (a subscription
// refused); it does not block.
func Register(ctx context.Context, nc *nats.Conn, s Service, reg prometheus.Registerer) error {
	g, _ := reg.(prometheus.Gatherer)
	md := map[string]string{}
	for k, v := range s.Metadata {
		md[k] = v
	}
	for k, v := range s.Subjects {
		md["subject."+k] = v
	}
	// id is the instance's id and start time once AddService returned (a
	// request may come before). The handlers must not call the service's
	// methods: micro holds its lock while it calls StatsHandler.
	var id atomic.Pointer[Status]
	status := func() Status {
		st := Status{Service: Name(s.Role), Version: version.SemVer(), Metadata: s.Metadata, Counters: counters(g, s.Counters)}
		if p := id.Load(); p != nil {
			st.ID, st.Started = p.ID, p.Started
		}
		return st
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:         Name(s.Role),
		Version:      version.SemVer(),
		Description:  s.Description,
		Metadata:     md,
		StatsHandler: func(*micro.Endpoint) any { return status() },
	})
	if err != nil {
		return fmt.Errorf("register %s as a micro service: %w", Name(s.Role), err)
	}
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(r micro.Request) {
		b, err := json.Marshal(status())
		if err != nil {
			_ = r.Error("500", err.Error(), nil)
			return
		}
		_ = r.Respond(b)
	}), micro.WithEndpointSubject(StatusSubject(s.Role)),
		micro.WithEndpointMetadata(map[string]string{"doc": "this process's service, version, id and request counters as JSON"}))
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("register %s status endpoint: %w", Name(s.Role), err)
	}
	id.Store(&Status{ID: svc.Info().ID, Started: svc.Stats().Started})
	context.AfterFunc(ctx, func() { _ = svc.Stop() })
	return nil
}

// counters returns the totals of the named counters in g, summed over
// their labels; nil without g.
func counters(g prometheus.Gatherer, names []string) map[string]float64 {
	if g == nil {
		return nil
	}
	mfs, err := g.Gather()
	if err != nil {
		return nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !want[mf.GetName()] {
			continue
		}
		total := 0.0
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
		out[strings.TrimPrefix(mf.GetName(), "herd_")] = total
	}
	return out
}
