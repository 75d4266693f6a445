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
	now := time.Now()
	reconnects := w.nc.Stats().Reconnects
	w.mu.Lock()
	if w.gone == nil {
		w.gone = map[string]goneSpan{}
	}
	if reconnects != w.reconnects {
		w.reconnects, w.reconnectedAt = reconnects, now
	}
	if now.Sub(w.reconnectedAt) < agentGoneAfter {
		// This connection came back (the server restarted, say): its
		// agents are reconnecting too and have no subscription yet.
		delete(w.gone, id)
		w.mu.Unlock()
		return
	}
	for other := range w.gone {
		if _, ok := w.running[other]; !ok {
			delete(w.gone, other)
		}
	}
	rc, ok := w.running[id]
	if !ok {
		w.mu.Unlock()
		return
	}
	sp, ok := w.gone[id]
	if !ok || now.Sub(sp.last) > agentGoneAfter {
		sp.first = now // a new spell without a reader
	}
	sp.last = now
	w.gone[id] = sp
	if now.Sub(sp.first) < agentGoneAfter {
		w.mu.Unlock()
		return
	}
	delete(w.gone, id)
	w.mu.Unlock()
	w.cancels.Add(rc.agent, id)
	w.log.Info("streaming caller gone; canceling its generation", zap.String("request_id", id), zap.Duration("without_reader", now.Sub(sp.first)))
	rc.cancel()
}
