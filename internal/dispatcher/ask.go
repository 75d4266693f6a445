package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// askStoreFor is how long the ask door keeps trying to store a request
// whose store JetStream did not answer, with the same id, so that it
// learns whether the request was stored (a duplicate then) instead of
// answering an error while the request may still be answered: well
// within HERD_REQ's duplicate window (2m).
const askStoreFor = 60 * time.Second

// askDuplicateWait bounds how long an ask re-sent under the id of a
// request still running waits for that request's outcome.
const askDuplicateWait = 10 * time.Minute

// respond answers a core NATS request (the ask door) with an error that
// is not stored: the request was not taken.
func (d *Dispatcher) respond(m *nats.Msg, e *wire.Error) {
	d.m.rejected.WithLabelValues(string(e.Code)).Inc()
	if wire.CheckNATSReply(m.Reply) != nil {
		return
	}
	id := m.Header.Get(wire.HdrMsgID)
	_ = d.nc.PublishMsg(outcome.FromError(id, e).Msg(m.Reply))
}

// onAsk stores a plain NATS request in HERD_REQ with the caller's inbox as
// its reply subject (on herd.req.<p>.<agent>.ask, which agents cannot
// publish). Every ask gets one answer: a request re-sent under the id of
// one that has an outcome gets that outcome (whether the first answer was
// lost or not), one still running gets its outcome when it ends, and a
// store JetStream did not answer is resolved through the id before
// anything is answered.
func (d *Dispatcher) onAsk(ctx context.Context, m *nats.Msg) {
	p, agent, err := wire.ParseDoor(m.Subject)
	if err != nil {
		d.respond(m, wire.Errorf(wire.CodeInvalidRequest, err.Error()))
		return
	}
	if m.Reply == "" || wire.CheckNATSReply(m.Reply) != nil {
		d.m.rejected.WithLabelValues(string(wire.CodeInvalidRequest)).Inc()
		d.log.Warn("ask without a usable reply subject dropped", zap.String("subject", m.Subject), zap.String("reply", m.Reply))
		return
	}
	if len(m.Data) > d.cfg.MaxBodyBytes {
		d.respond(m, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("body of %d bytes is over the limit of %d (dispatcher.max_body_bytes)", len(m.Data), d.cfg.MaxBodyBytes)))
		return
	}
	id := m.Header.Get(wire.HdrMsgID)
	chosen := id != ""
	switch {
	case !chosen:
		id = wire.ScopedID(agent, "herd-"+nuid.Next())
	case !wire.ValidToken(id):
		d.respond(m, wire.Errorf(wire.CodeInvalidRequest, "Nats-Msg-Id must be 1-128 characters of A-Z a-z 0-9 _ = -"))
		return
	}
	if owner, ok := wire.IDOwner(id); ok && owner != agent {
		d.respond(m, errForeignID(id))
		return
	}
	it := job.Item{ID: id, Agent: agent, Priority: p, Reply: m.Reply}
	if chosen {
		o, err := d.store.Result(ctx, id)
		if err != nil {
			d.log.Warn("ask: look up a stored outcome", zap.String("request_id", id), zap.Error(err))
		}
		if o != nil {
			d.resendTo(m, it, o)
			return
		}
	}
	out := nats.NewMsg(wire.AskedSubject(p, agent))
	out.Data = m.Data
	for k, v := range m.Header {
		out.Header[k] = v
	}
	out.Header.Set(wire.HdrMsgID, id)
	out.Header.Set(wire.HdrReplyTo, m.Reply)
	if d.answerAtDoor(ctx, out, p, agent) {
		return
	}
	ack, ours, err := d.storeAsk(ctx, out)
	switch {
	case err == nil && ack.Duplicate && ours:
		// This ask's own first write was stored after all: its outcome
		// goes to the ask's reply with the stored request. Had the id been
		// in use already, the caller asks again and gets the outcome.
	case err == nil && ack.Duplicate:
		// The same id was stored moments ago (a retry): its outcome, when
		// it comes, is this ask's answer too.
		d.awaitOutcome(ctx, m, it)
	case err == nil:
	case wire.QueueFull(err):
		d.respond(m, queueFull(err, agent, p, d.cfg.MaxPerAgent))
	case definitive(err):
		d.respond(m, wire.Errorf(wire.CodeInvalidRequest, "request not stored: "+err.Error()))
	default:
		// JetStream never answered: the request may be stored and then
		// answered on m.Reply, so an error now could be a second answer.
		// The caller's request times out; asking again under the same id
		// finds the outcome.
		d.m.rejected.WithLabelValues("store_unknown").Inc()
		d.log.Error("ask: could not learn whether the request was stored; not answering", zap.String("request_id", id), zap.Error(err))
	}
}

// storeAsk publishes out, retrying with the same id while JetStream does
// not answer, for up to askStoreFor. ours says a duplicate may be this
// ask's own earlier write (an attempt JetStream did not answer): then the
// stored copy answers the ask, and nothing more is sent.
func (d *Dispatcher) storeAsk(ctx context.Context, out *nats.Msg) (ack *jetstream.PubAck, ours bool, err error) {
	deadline := time.Now().Add(askStoreFor)
	backoff := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err = d.publishAsk(pctx, out)
		cancel()
		if err == nil || wire.QueueFull(err) || definitive(err) || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return ack, ours, err
		}
		ours = true // unanswered: it may be stored
		d.log.Warn("ask: store not answered; trying again with the same id", zap.String("request_id", out.Header.Get(wire.HdrMsgID)), zap.Error(err))
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// definitive reports whether a publish error means the message was not
// stored (the server said so), as opposed to no answer at all.
func definitive(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject)
}

// awaitOutcome answers an ask re-sent under the id of a request that is
// stored but not settled yet with that request's outcome, once it has one.
func (d *Dispatcher) awaitOutcome(ctx context.Context, m *nats.Msg, it job.Item) {
	select {
	case d.askWaits <- struct{}{}:
	default:
		d.respond(m, wire.Errorf(wire.CodeQueueFull, "too many asks wait for a running request's outcome; ask again later"))
		return
	}
	go func() {
		defer func() { <-d.askWaits }()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), askDuplicateWait)
		defer cancel()
		backoff := 50 * time.Millisecond
		for {
			o, err := d.store.Result(wctx, it.ID)
			if err == nil && o != nil {
				d.resendTo(m, it, o)
				return
			}
			select {
			case <-wctx.Done():
				d.log.Warn("ask: no outcome for a re-sent request in time", zap.String("request_id", it.ID))
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}()
}

// resendTo answers an ask with the stored outcome of its id, when the id
// is the asking agent's.
func (d *Dispatcher) resendTo(m *nats.Msg, it job.Item, o *outcome.Outcome) {
	if owner := o.Owner(); owner != "" && owner != it.Agent {
		d.respond(m, errForeignID(it.ID))
		return
	}
	it.Stream = streams(m.Data) // decoded only on this rare path
	d.settler.Resend(it, o)
	d.m.requests.WithLabelValues(string(it.Priority), "resent").Inc()
}

// errForeignID is the error for a request id that belongs to another
// agent.
func errForeignID(id string) *wire.Error {
	return wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("request id %q belongs to another agent: choose an id of your own (<agent>=<random>)", id))
}

// streams reports whether a request body asks to stream, without
// validating it (the dispatcher does that when it takes the request).
func streams(body []byte) bool {
	r, err := request.Decode(body, request.Limits{})
	return err == nil && r.Stream
}

// answerAtDoor answers an ask whose answer is in the cache at once, with no
// durable write (a hit needs none: its answer is the cache entry, and the
// same ask sent again is a hit again), and reports whether it did. Anything
// else (a miss, an error, "model": "auto", Herd-Cache off or refresh) is
// stored and settled by a dispatcher as usual.
func (d *Dispatcher) answerAtDoor(ctx context.Context, out *nats.Msg, p wire.Priority, agent string) (hit bool) {
	switch out.Header.Get(wire.HdrCache) {
	case wire.CacheOff, wire.CacheRefresh:
		return false
	}
	now := d.now()
	in := incoming{subject: out.Subject, header: out.Header, data: out.Data, received: now, door: true, agent: agent}
	it, herr := d.admitIncoming(ctx, in, p)
	if herr == nil && it.Op != "" {
		// Admitted in full ("model": "auto" is left to the dispatcher):
		// kept for the dispatcher that takes it, unless it is a hit.
		defer func() {
			if !hit {
				d.admitted.put(out.Subject, out.Data, it, now)
			}
		}()
	}
	if herr != nil || it.Key == "" || it.Reply == "" || !d.served(it.Model) {
		return false
	}
	o, err := d.store.Cached(ctx, it.Key)
	if err != nil || o == nil || !o.OK() {
		return false
	}
	answer := *o
	answer.RequestID, answer.Cache, answer.BatchSize, answer.Worker, answer.Agent = it.ID, wire.CacheHit, 0, "", ""
	answer.QueueMs, answer.TotalMs = 0, d.now().Sub(now).Milliseconds()
	d.settler.Resend(it, &answer)
	d.recordItem(&it, out.Header, out.Data)
	d.m.requests.WithLabelValues(string(p), "hit").Inc()
	d.m.settled(it, "hit", now)
	d.events.Request(&events.Request{At: now, ID: it.ID, Model: it.Model, Priority: string(p), Agent: it.Agent,
		Op: string(it.Op), Status: answer.Status, Cache: wire.CacheHit, TotalMs: answer.TotalMs, Dispatcher: true})
	return true
}

// queueFull is the 429 for a store HERD_REQ refused: the agent's share
// (queue.max_per_agent) or the whole queue (queue.max_requests).
func queueFull(err error, agent string, p wire.Priority, share int) *wire.Error {
	if strings.Contains(err.Error(), "per subject") {
		return wire.Errorf(wire.CodeQueueFull, fmt.Sprintf("agent %q already has its share of %d requests waiting at priority %s (queue.max_per_agent); retry later", agent, share, p))
	}
	return wire.Errorf(wire.CodeQueueFull, "request queue is full (queue.max_requests); retry later")
}
