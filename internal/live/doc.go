// Package live is herd's live page: a Collector that listens to the metric
// events (herd.metrics.>) and decisions (herd.events.>) on a core NATS
// subscription, polls the request queues, and keeps a rolling picture of
// the last two minutes; and an HTTP handler that serves it as one
// self-contained page (GET /live: HTML, CSS and JavaScript embedded in the
// binary, no external assets) updated by server-sent events
// (GET /live/events, one snapshot a second), and as JSON
// (GET /live/snapshot).
//
// The collector counts what it receives while it runs; it does not read
// the HERD_METRICS stream back, so a page opened after a restart starts
// empty and fills within its history (Config.History). Events are placed
// in time by when they arrive, not by their own timestamps, so the page
// shows what the cluster is doing now even with clocks that disagree.
//
// What the numbers mean:
//   - answered: request outcomes with status < 400 (cache hits and
//     coalesced answers included); errors: outcomes with status >= 400
//     (rejections such as queue_full included). Throughput is answered per
//     second, error rate errors over all outcomes, both over Config.Span.
//   - cache hit rate: (hit + coalesced) over answered, over Config.Span.
//   - latency percentiles: end-to-end (total_ms) of served outcomes, from
//     internal/window over Config.Span.
//   - batch fill: the mean Fill of the batches published over Config.Span.
//   - queues: requests waiting (not yet delivered) in each HERD_REQ
//     priority consumer, polled every Config.QueuePoll.
//   - budget per model: the slots, busy slots and CPU budget of the
//     workers that serve the model, from their heartbeats; a worker that
//     serves several models counts for each of them.
//   - doors: requests per second over Config.Span by door. An HTTP door's
//     (ollama-http, openai-http) are the calls the gateway in this process
//     asked herd (herd_gateway_requests_total from the registry given to
//     CountDoors, without /api/tags and the like or calls refused for
//     their key); nats is every request outcome less those, so with no
//     gateway in the process (the optimizer's page) it is every request.
//   - breakers: the latest decision per model, from herd.events.breaker.>
//     and the herd_control bucket (breakers.<hex>) when it exists.
package live
