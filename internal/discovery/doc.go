// Package discovery registers each herd process (dispatcher, worker,
// optimizer, HTTP gateway) as a NATS micro service (github.com/nats-io/nats.go/micro),
// so that `nats micro ls`, `nats micro info` and `nats micro stats` list
// herd's processes with their versions, the subjects they serve and their
// request counts, with nothing but a NATS connection.
//
// Each process adds one service, herd-<role>, with one endpoint, status,
// on herd.status.<role> (queue group: one process of the role answers).
// The service's metadata names the subjects the role serves (the ask door
// and lookups for the dispatcher, batches for the worker, metrics for the
// optimizer), and its stats carry the process's own request counters,
// read from its Prometheus registry.
//
// Why not the ask door and lookups as micro endpoints: they are queue
// subscriptions of the dispatcher with their own queue group, admission
// and streamed replies (internal/dispatcher); wrapping them in micro
// handlers would move herd's protocol into micro's request type and
// error headers, and a second subscription would split the traffic. So
// the protocol stays where it is, and discovery describes it.
//
// The service runs from the component's construction until the context
// given to Register ends: a process that is shutting down leaves the
// list at once, while it drains.
package discovery
