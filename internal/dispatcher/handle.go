package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// handle settles one request: an error reply, a stored outcome sent
// again, a cache hit, a place in a coalescing group, a wait for a worker
// or a place in a batch.
func (d *Dispatcher) handle(ctx context.Context, msg jetstream.Msg, p wire.Priority) {
	d.handleMsg(ctx, msg, p, false)
}

// handleMsg is handle; again says the request was taken before by this
// dispatcher and held (for a coalescing leader, for a worker): it is not
// captured or checked against herd_results again.
func (d *Dispatcher) handleMsg(ctx context.Context, msg jetstream.Msg, p wire.Priority, again bool) {
	it, herr := d.admit(ctx, msg, p)
	if it.Reply == "" {
		reason := "missing " + wire.HdrReplyTo + " header: no subject to answer on"
		if herr != nil {
			reason += "; " + herr.Message
		}
		d.m.rejected.WithLabelValues(string(wire.CodeInvalidRequest)).Inc()
		d.deadLetter(ctx, msg, p, it.Agent, reason)
		return
	}
	pd := &pending{item: it, msg: msg}
	if owner, ok := wire.IDOwner(it.ID); ok && owner != it.Agent {
		// Storing this outcome under the id would answer its owner.
		d.refuse(pd, errForeignID(it.ID))
		return
	}
	if !again {
		// The ask door looked the id up before it stored the ask (and ids
		// it assigns are new), so a first delivery of an ask needs no
		// second look: were it another delivery of a settled message, its
		// outcome's claim would keep it to one answer.
		if (it.Redelivered || !it.Asked) && d.settledBefore(ctx, pd) {
			return
		}
		d.record(msg, &it)
	}
	if herr != nil {
		d.m.rejected.WithLabelValues(string(herr.Code)).Inc()
		d.log.Info("rejected", zap.String("request_id", it.ID), zap.String("code", string(herr.Code)), zap.String("error", herr.Message))
		d.answer(ctx, pd, outcome.FromError(it.ID, herr), string(herr.Code))
		return
	}
	if !d.served(it.Model) {
		d.holdForWorker(pd)
		return
	}
	if it.Key != "" && msg.Headers().Get(wire.HdrCache) != wire.CacheRefresh {
		o, err := d.store.Cached(ctx, it.Key)
		if err != nil {
			d.log.Warn("cache lookup", zap.String("request_id", it.ID), zap.Error(err))
		}
		if o != nil && o.OK() {
			hit := *o
			hit.RequestID, hit.Cache, hit.BatchSize, hit.Worker, hit.Agent = it.ID, wire.CacheHit, 0, "", ""
			d.answer(ctx, pd, &hit, "hit")
			return
		}
	}
	if it.Key != "" {
		if d.join(ctx, pd) {
			return
		}
	}
	d.enqueue(ctx, pd)
}

// settledBefore reports whether the request already has an outcome, and
// then settles this delivery: a request re-sent under its id (a first
// delivery: JetStream no longer drops it as a duplicate) gets the stored
// outcome on its reply subject; a redelivery gets it only when the stored
// outcome is this dispatcher's own claim whose acknowledgement was lost
// (the caller was never sent it); an id whose outcome is another agent's
// is refused. When herd_results cannot be read the request goes on: the
// claim of its outcome still keeps it to one answer.
func (d *Dispatcher) settledBefore(ctx context.Context, pd *pending) bool {
	it := pd.item
	o, resent, err := d.settler.Recover(ctx, it)
	if err != nil {
		d.log.Warn("look up a stored outcome", zap.String("request_id", it.ID), zap.Error(err))
		return false
	}
	if o == nil {
		return false
	}
	result := "already_answered"
	// The message this outcome settled, delivered again (JetStream counts
	// a consumer leader change's redelivery as a first delivery), is not
	// the request sent again.
	again := it.Redelivered || (o.ReqSeq != 0 && o.ReqSeq == it.Seq)
	switch {
	case resent:
		result = "resent"
	case o.Owner() != "" && o.Owner() != it.Agent:
		// (An outcome stored before herd recorded owners has none.)
		d.refuse(pd, errForeignID(it.ID))
		return true
	case !again:
		d.settler.Resend(it, o)
		result = "resent"
	}
	done(pd.msg, actSettled)
	d.m.requests.WithLabelValues(string(it.Priority), result).Inc()
	return true
}

// served reports whether a live worker serves model.
func (d *Dispatcher) served(model string) bool {
	_, served, _ := d.fleet.lookup(model, d.now())
	return served
}

// holdForWorker keeps a request for a model no live worker serves until
// one does (keepLoop hands it on), its deadline passes (504) or
// NoWorkerWait passes (404).
func (d *Dispatcher) holdForWorker(pd *pending) {
	d.mu.Lock()
	d.unserved = append(d.unserved, pd)
	d.mu.Unlock()
	d.log.Debug("waiting for a worker", zap.String("request_id", pd.item.ID), zap.String("model", pd.item.Model))
}

// admit reads a stored request: its id, reply subject, deadline, cache
// policy and body. It returns the item with as much filled in as could be
// read, and the error to answer when the request cannot run.
func (d *Dispatcher) admit(ctx context.Context, msg jetstream.Msg, p wire.Priority) (job.Item, *wire.Error) {
	in := incoming{subject: msg.Subject(), header: msg.Headers(), data: msg.Data(), received: d.now()}
	if meta, err := msg.Metadata(); err == nil {
		in.received, in.redelivered, in.seq = meta.Timestamp, meta.NumDelivered > 1, meta.Sequence.Stream
	}
	if it, ok := d.admittedAtDoor(in); ok {
		return it, nil
	}
	return d.admitIncoming(ctx, in, p)
}

// admittedAtDoor returns the admission the ask door made of an ask it
// stored, when this dispatcher is the one that takes it on its first
// delivery and nothing admission read has changed since (the request was
// not canceled, its deadline and its model's breaker allow it): the body
// is then decoded once on the request's path.
func (d *Dispatcher) admittedAtDoor(in incoming) (job.Item, bool) {
	if in.redelivered {
		return job.Item{}, false
	}
	it, ok := d.admitted.take(in.header.Get(wire.HdrMsgID), in.subject, in.header.Get(wire.HdrReplyTo), in.data, d.now())
	if !ok {
		return job.Item{}, false
	}
	if d.cancels.Canceled(it.Agent, it.ID) || (!it.Deadline.IsZero() && !d.now().Before(it.Deadline)) {
		return job.Item{}, false
	}
	if _, open := d.fleet.openBreaker(it.Model); open {
		return job.Item{}, false
	}
	it.Received, it.Seq, it.Redelivered, it.Pulled = in.received, in.seq, false, d.now()
	return it, true
}

// incoming is a request as a door received it: stored in HERD_REQ (a
// JetStream message) or not yet (an ask the door may answer itself).
type incoming struct {
	subject     string
	header      nats.Header
	data        []byte
	received    time.Time
	redelivered bool
	seq         uint64 // in HERD_REQ; 0 for an ask not stored yet
	// agent is the agent the ask door parsed from the ask's subject (empty:
	// not parsed yet).
	agent string
	// door: checked at the ask door for a cache hit, before it is stored;
	// "model": "auto" is left to the dispatcher that takes it (its choice
	// is recorded once).
	door bool
}

// admitIncoming is admit for a request from either door: its headers
// (admitHeaders), then its body (admitBody).
func (d *Dispatcher) admitIncoming(ctx context.Context, in incoming, p wire.Priority) (job.Item, *wire.Error) {
	it, cache, herr := d.admitHeaders(in, p)
	if herr != nil {
		return it, herr
	}
	return it, d.admitBody(ctx, &it, in, cache)
}

// cachePolicy is what a request's headers say about caching it.
type cachePolicy struct {
	mode  string // Herd-Cache: "", auto, off or refresh
	asked bool   // Herd-Cache-TTL set: cache it even when not reproducible
}

// admitHeaders reads a request's subject and headers: its id, agent,
// reply subject, deadline and cache policy. The item has as much filled
// in as could be read, also with an error.
func (d *Dispatcher) admitHeaders(in incoming, p wire.Priority) (job.Item, cachePolicy, *wire.Error) {
	var cp cachePolicy
	h := in.header
	it := job.Item{Priority: p, Reply: h.Get(wire.HdrReplyTo), ID: h.Get(wire.HdrMsgID), Received: in.received, Redelivered: in.redelivered, Seq: in.seq, Pulled: d.now()}
	agent, asked := in.agent, true
	var err error
	if agent == "" { // not parsed by the ask door already
		_, agent, asked, err = wire.ParseStored(in.subject)
	}
	it.Agent, it.Asked = agent, asked
	if it.ID == "" {
		// Ids herd assigns are scoped to their agent, like the SDK's.
		it.ID = "herd-" + nuid.Next()
		if err == nil {
			it.ID = wire.ScopedID(agent, it.ID)
		}
	}
	if err != nil {
		return it, cp, wire.Errorf(wire.CodeInvalidRequest, err.Error())
	}
	if it.Reply != "" {
		// The ask door stores the ask's own NATS reply, which the server
		// may have mapped (_R_.…); a Herd-Reply-To header may not be.
		check := wire.CheckReply
		if asked {
			check = wire.CheckNATSReply
		}
		if err := check(it.Reply); err != nil {
			// Answering there would publish with the dispatcher's
			// permissions (a forged request or result): dead-letter it.
			it.Reply = ""
			return it, cp, wire.Errorf(wire.CodeInvalidRequest, err.Error())
		}
	}
	if !wire.ValidToken(it.ID) {
		bad := it.ID
		it.ID = "herd-" + nuid.Next()
		return it, cp, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("Nats-Msg-Id %q must be 1-128 characters of A-Z a-z 0-9 _ = -", bad))
	}
	if d.cancels.Canceled(it.Agent, it.ID) {
		return it, cp, wire.Errorf(wire.CodeCanceled, "request canceled by its agent")
	}
	if v := h.Get(wire.HdrDeadline); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return it, cp, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("Herd-Deadline %q is not an RFC 3339 time", v))
		}
		it.Deadline = t
	}
	if v := h.Get(wire.HdrTimeout); v != "" {
		to, err := time.ParseDuration(v)
		if err != nil || to <= 0 {
			return it, cp, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("Herd-Timeout %q is not a positive Go duration such as 30s", v))
		}
		if dl := it.Received.Add(to); it.Deadline.IsZero() || dl.Before(it.Deadline) {
			it.Deadline = dl
		}
	}
	if !it.Deadline.IsZero() && !d.now().Before(it.Deadline) {
		return it, cp, wire.Errorf(wire.CodeDeadlineExceeded, "deadline passed before the request could run")
	}
	cp.mode = h.Get(wire.HdrCache)
	switch cp.mode {
	case "", wire.CacheAuto, wire.CacheOff, wire.CacheRefresh:
	default:
		return it, cp, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("Herd-Cache %q is not auto, off or refresh", cp.mode))
	}
	it.CacheTTL = d.cfg.CacheTTL
	if v := h.Get(wire.HdrCacheTTL); v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil || ttl < time.Second || ttl > d.cfg.MaxCacheTTL {
			return it, cp, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("Herd-Cache-TTL %q must be a Go duration from 1s to %s", v, d.cfg.MaxCacheTTL))
		}
		it.CacheTTL, cp.asked = ttl, true
	}
	return it, cp, nil
}

// admitBody decodes a request's body once and decides how it runs: the
// limits, the runner options and caps herd sets, the model ("model":
// "auto", a breaker's fallback), whether a worker serves it, and its cache
// key. It fills in it and returns the error to answer, if any.
func (d *Dispatcher) admitBody(ctx context.Context, it *job.Item, in incoming, cp cachePolicy) *wire.Error {
	d.decodes.Add(1)
	req, err := request.Decode(in.data, request.Limits{MaxBytes: d.cfg.MaxBodyBytes})
	if err != nil {
		return wire.Errorf(wire.CodeInvalidRequest, err.Error())
	}
	if req.Op == request.OpEmbed {
		if in, _ := request.EmbedInputs(req.Embed); len(in) > d.cfg.MaxEmbedInputs {
			return wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf("%d inputs is over the limit of %d per request (dispatcher.max_embed_inputs): send them in several requests", len(in), d.cfg.MaxEmbedInputs))
		}
	}
	// Options that change the shared runner are herd's (runner.go).
	body, herr := d.runnerOptions(req, in.data)
	if herr != nil {
		return herr
	}
	if req.Model == wire.ModelAuto {
		if in.door {
			return nil // no key: not answered at the door
		}
		if body, req, herr = d.selectAuto(ctx, it, body); herr != nil {
			return herr
		}
	}
	if body, herr = d.maxPredict(req, body); herr != nil {
		return herr
	}
	it.Op, it.Model, it.Stream, it.Body = req.Op, req.Model, req.Stream, json.RawMessage(body)
	if b, open := d.breaker(req.Model); open {
		// The model's breaker is open: fail fast, or go to its fallback.
		if b.Fallback == "" || b.Fallback == req.Model {
			why := fmt.Sprintf("model %q is failing (%s); retry after %s", req.Model, b.Reason, b.RetryAfter)
			return wire.Errorf(wire.CodeBreakerOpen, why)
		}
		body, err := withModel(it.Body, b.Fallback)
		if err != nil {
			return wire.Errorf(wire.CodeInternal, "route to fallback: "+err.Error())
		}
		if req, err = request.Decode(body, request.Limits{}); err != nil {
			return wire.Errorf(wire.CodeInternal, "route to fallback: "+err.Error())
		}
		it.Body, it.Model = body, req.Model
		if !in.door { // counted once, by the dispatcher that runs it
			d.m.fallbacks.WithLabelValues(b.Model, b.Fallback).Inc()
		}
	}
	digest, served, anyLive := d.fleet.lookup(req.Model, d.now())
	if anyLive && !served {
		// Live workers serve other models: a misspelled or retired model
		// is answered at once. With no live worker at all (start-up,
		// every worker restarting) the request waits (holdForWorker).
		return wire.Errorf(wire.CodeModelNotFound, fmt.Sprintf("model %q is not served by any worker", req.Model))
	}
	// Only reproducible answers (or ones the request asks to cache) are
	// cached and merged: identical requests sampled at temperature > 0
	// without a seed each get their own sample.
	if cp.mode != wire.CacheOff && (req.Reproducible() || cp.asked) {
		window := d.fleet.window(req.Model, d.now())
		it.Key, it.Cacheable = req.KeyRun(request.Ran{Digest: digest, Window: window, Scope: d.keyScope(it.Agent)}), true
		it.CacheAsked = cp.asked
	}
	return nil
}

// keepLoop keeps held requests alive (in-progress acks), answers the ones
// whose deadline passed, recovers coalescing groups whose announcement was
// missed or whose leader is gone, and hands requests waiting for a worker
// on once one serves their model.
func (d *Dispatcher) keepLoop(ctx context.Context, ackWait time.Duration) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	keepEvery := max(ackWait/3, time.Second)
	lastKeep := d.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := d.now()
		keep := now.Sub(lastKeep) >= keepEvery
		if keep {
			lastKeep = now
		}
		d.keepFollowers(ctx, now, keep)
		d.keepUnserved(ctx, now, keep)
	}
}

// keepUnserved settles the requests waiting for a worker: handed on once
// a live worker serves their model, answered 504 when their deadline
// passed and 404 after NoWorkerWait; the others are kept in progress.
func (d *Dispatcher) keepUnserved(ctx context.Context, now time.Time, keep bool) {
	var ready, late, gone []*pending
	d.mu.Lock()
	kept := d.unserved[:0]
	for _, h := range d.unserved {
		_, served, _ := d.fleet.lookup(h.item.Model, now)
		switch {
		case served:
			ready = append(ready, h)
		case !h.item.Deadline.IsZero() && !now.Before(h.item.Deadline):
			late = append(late, h)
		case now.Sub(h.item.Received) >= d.cfg.NoWorkerWait:
			gone = append(gone, h)
		default:
			if keep {
				_ = h.msg.InProgress()
			}
			kept = append(kept, h)
		}
	}
	clear(d.unserved[len(kept):])
	d.unserved = kept
	d.mu.Unlock()
	for _, h := range late {
		d.answer(ctx, h, outcome.FromError(h.item.ID, wire.Errorf(wire.CodeDeadlineExceeded, "deadline passed while no worker served the model")), "deadline_exceeded")
	}
	for _, h := range gone {
		e := wire.Errorf(wire.CodeModelNotFound, fmt.Sprintf("no worker served model %q for %s (queue.no_worker_wait)", h.item.Model, d.cfg.NoWorkerWait))
		d.answer(ctx, h, outcome.FromError(h.item.ID, e), string(wire.CodeModelNotFound))
	}
	if len(ready) > 0 {
		d.busy.Add(1)
		go func() {
			defer d.settled()
			d.runAgain(context.WithoutCancel(ctx), ready)
		}()
	}
}

// record captures the request as the agent sent it, when capture is on.
func (d *Dispatcher) record(msg jetstream.Msg, it *job.Item) {
	d.recordItem(it, msg.Headers(), msg.Data())
}

// recordItem is record for a request with these headers and body.
func (d *Dispatcher) recordItem(it *job.Item, h nats.Header, data []byte) {
	if !d.rec.Enabled() {
		return
	}
	rec := &capture.Record{Time: it.Received, ID: it.ID, Priority: it.Priority, Agent: it.Agent,
		Model: it.Model, Op: string(it.Op), Body: json.RawMessage(data)}
	for _, name := range capture.ReplayedHeaders {
		if v := h.Get(name); v != "" {
			if rec.Headers == nil {
				rec.Headers = map[string]string{}
			}
			rec.Headers[name] = v
		}
	}
	if !json.Valid(rec.Body) {
		b, _ := json.Marshal(string(data))
		rec.Body, rec.Raw = b, true // keep bad input replayable
	}
	d.rec.Record(rec)
}

// withModel returns body with its "model" replaced.
func withModel(body []byte, model string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	m["model"], _ = json.Marshal(model)
	return json.Marshal(m)
}

// keyScope returns the scope of agent's cache keys: agent under the
// "agent" cache scope (dispatcher.cache_scope or its profile's), else ""
// (shared).
func (d *Dispatcher) keyScope(agent string) string {
	if policy.CacheScope(d.cfg.Auto, agent, d.cfg.CacheScope) == policy.CacheScopeAgent {
		return agent
	}
	return ""
}
