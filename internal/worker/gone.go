package worker

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/wire"
)

// A streaming caller that went away (closed its connection, died) leaves
// nobody subscribed to its reply subject. Every streamed chunk is published
// with a reply subject of the worker's (goneRoot.<id>); NATS answers such a
// publish there with a no-responders status when it reached no subscriber.
// A generation whose chunks found no reader for agentGoneAfter is canceled,
// so Ollama stops working for nobody. The wait lets an agent that is only
// reconnecting keep its stream; for agentGoneAfter after the worker's own
// connection reconnected, no caller counts as gone, since its agents are
// reconnecting too (a restarted server).

// agentGoneAfter is how long a caller must have had no subscription
// before its call is stopped: a streaming one here, a non-streaming one
// by its probes (probe.go).
const agentGoneAfter = 2 * time.Second

// goneRoot starts the reply subjects of streamed chunks. One per process:
// a worker ignores the ids it does not run.
var goneRoot = wire.GonePrefix + "." + nuid.Next()

// goneSubject is the reply subject of request id's streamed chunks.
func goneSubject(id string) string { return goneRoot + "." + id }

// goneSpan is when a streaming caller's chunks first and last found no
// subscriber.
type goneSpan struct{ first, last time.Time }

// onNoReader handles NATS's no-responders answer to a streamed chunk:
// once the caller has had no subscription for agentGoneAfter, its
// generation is canceled (and answered 499 canceled).
func (w *Worker) onNoReader(m *nats.Msg) {
	if m.Header.Get("Status") != "503" || len(m.Subject) <= len(goneRoot)+1 {
		return
	}
	id := m.Subject[len(goneRoot)+1:]
	rc, since, gone := w.calls.noReader(id, time.Now(), w.nc.Stats().Reconnects, agentGoneAfter)
	if !gone {
		return
	}
	w.cancels.Add(rc.agent, id)
	w.log.Info("streaming caller gone; canceling its generation", zap.String("request_id", id), zap.Duration("without_reader", time.Since(since)))
	rc.cancel()
}
