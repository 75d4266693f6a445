package live

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// The doors the live page shows, the door label's values (the HTTP ones
// are internal/gateway's DoorOllama and DoorOpenAI).
const (
	DoorNATS   = "nats"
	doorOllama = "ollama-http"
	doorOpenAI = "openai-http"
)

// gatewayRequests is the HTTP doors' counter (internal/gateway).
const gatewayRequests = "herd_gateway_requests_total"

// notAsked are gateway endpoints and outcomes that never reach herd's ask
// door: lists answered by the gateway itself, and calls refused for their
// key. They are left out of a door's requests so that the NATS door is
// every request outcome less the ones the HTTP doors asked.
var (
	notAskedEndpoints = map[string]bool{"tags": true, "ps": true, "show": true, "models": true, "model": true}
	notAskedOutcomes  = map[string]bool{"unauthorized": true, "forbidden": true}
)

// DoorRate is one door's requests over Span.
type DoorRate struct {
	// Door is nats, ollama-http or openai-http.
	Door string `json:"door"`
	// PerSecond is the door's requests per second over Span: for an HTTP
	// door the calls it asked herd (herd_gateway_requests_total), for
	// nats every request outcome less those.
	PerSecond float64 `json:"per_second"`
}

// CountDoors makes the collector read the HTTP doors' requests from g
// (the registry of a process that runs a gateway, as herd up does) every
// second, for Snapshot.Doors. Call it before Run. Without it, every
// request counts for the NATS door.
func (c *Collector) CountDoors(g prometheus.Gatherer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gather = g
}

// httpAsks returns the requests each HTTP door has asked herd since the
// process started, from g; nil without g.
func httpAsks(g prometheus.Gatherer) map[string]float64 {
	if g == nil {
		return nil
	}
	mfs, err := g.Gather()
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != gatewayRequests {
			continue
		}
		for _, m := range mf.GetMetric() {
			var door, endpoint, outcome string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "door":
					door = l.GetValue()
				case "endpoint":
					endpoint = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			if door == "" || notAskedEndpoints[endpoint] || notAskedOutcomes[outcome] {
				continue
			}
			out[door] += m.GetCounter().GetValue()
		}
	}
	return out
}

// doorRates returns the requests per door over span seconds: http are
// the HTTP doors' asks and outcomes every request outcome in that time.
func doorRates(http map[string]float64, outcomes int64, span int) []DoorRate {
	out := []DoorRate{}
	if span <= 0 {
		return out
	}
	nats := float64(outcomes)
	for _, d := range []string{doorOllama, doorOpenAI} {
		nats -= http[d]
	}
	out = append(out, DoorRate{Door: DoorNATS, PerSecond: max(nats, 0) / float64(span)})
	for d, n := range http {
		out = append(out, DoorRate{Door: d, PerSecond: n / float64(span)})
	}
	slices.SortFunc(out[1:], func(a, b DoorRate) int { return cmp.Compare(a.Door, b.Door) })
	return out
}
