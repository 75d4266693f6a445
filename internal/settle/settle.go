// Package settle gives a request its final outcome. It is the one place
// the rules of herd's first promise are written (docs/architecture.md,
// "Delivery"), used by the dispatcher (errors, cache hits, coalesced
// answers, requests JetStream gave up on) and the worker (answers):
//
//  1. The outcome is claimed in herd_results first; only the first one
//     stored is the request's outcome, so a request that ran twice is
//     answered once. A claim whose write was not acknowledged is retried
//     with the same token (here, and on the request's next delivery to
//     this process through the outcome.Claims memory), so a write that was
//     in fact stored is recognised as this run's own and sent.
//  2. Only the run whose claim won dead-letters the request (when its
//     outcome says it could not be served), replies and publishes the
//     metric event.
//  3. What is sent is what is stored: a lookup or a re-sent request gets
//     the same bytes.
package settle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/wire"
)

// ErrNotStored is returned (wrapped) by Settle when the outcome could not
// be claimed in herd_results: nothing was sent, and the request must be
// handed back so that a later delivery settles it.
var ErrNotStored = errors.New("outcome not stored")

// errResultsFull is claim's error when herd_results refused the write
// because it is full.
var errResultsFull = errors.New("herd_results is full")

// Settler settles outcomes for one process. Create it with New.
type Settler struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	store  *outcome.Store
	events *events.Publisher
	log    *zap.Logger
	claims *outcome.Claims
	// retry is how long Settle keeps trying a claim that JetStream does
	// not answer (a cluster electing a leader) before it gives up.
	retry time.Duration
	// OnDeadLetter, when set, is called for every dead letter written.
	OnDeadLetter func()
	// OnResultsFull, when set, is called for every outcome sent without
	// being stored because herd_results is full.
	OnResultsFull func()
}

// outcomeMargin is what a reply and a herd_results entry add to an
// answer's body (headers, the outcome's JSON fields).
const outcomeMargin = 64 << 10

// New returns a Settler. retry is how long a claim is retried while
// JetStream does not answer (0: tried once); claims remembers failed
// claims for the request's next delivery here.
func New(nc *nats.Conn, js jetstream.JetStream, store *outcome.Store, ev *events.Publisher, log *zap.Logger, claims *outcome.Claims, retry time.Duration) *Settler {
	return &Settler{nc: nc, js: js, store: store, events: ev, log: log, claims: claims, retry: retry}
}

// Final is one request's final outcome, to be settled.
type Final struct {
	Item    job.Item
	Outcome *outcome.Outcome
	// Chunk is the final chunk of a stream whose earlier chunks were sent,
	// with Seq its Herd-Seq; nil when the caller gets the whole outcome
	// as one message (Herd-Seq 0 when it streams).
	Chunk json.RawMessage
	Seq   int
	// DeadLetter, when not empty, writes the request to HERD_DLQ with this
	// reason, as part of the outcome: only when this outcome is the one
	// stored.
	DeadLetter string
	// Won, when set, is called once the outcome is known to be the
	// request's (its claim won), before the reply goes out: a coalescing
	// leader is released there, so that a caller who asks again right
	// after its answer never joins a group whose leader has finished.
	Won func(o *outcome.Outcome)
	// Event is the metric event with the caller's own fields (worker,
	// Ollama figures, dispatcher: true); Settle fills in the outcome's.
	// Nil publishes none.
	Event *events.Request
}

// Settle claims f's outcome and, when it is the request's outcome, sends
// it. It reports whether it was (false: another run's outcome is stored
// and was sent by that run). It blocks until JetStream answered the
// claim, at most the Settler's retry time, and returns an error wrapping
// ErrNotStored when it never did: nothing was sent.
func (s *Settler) Settle(ctx context.Context, f Final) (bool, error) {
	ctx = context.WithoutCancel(ctx)
	o, it := f.Outcome, f.Item
	if limit := int(s.nc.MaxPayload()) - outcomeMargin; len(o.Body) > limit {
		// It could be neither stored nor sent: every delivery would fail
		// the same way. The request's outcome is that refusal.
		*o = *outcome.FromError(it.ID, wire.Errorf(wire.CodeInvalidRequest, fmt.Sprintf(
			"the answer is %d bytes, more than NATS carries (max_payload %d less %d for herd's fields): ask for a shorter answer or fewer inputs",
			len(o.Body), s.nc.MaxPayload(), outcomeMargin)))
		f.Chunk = nil
	}
	if o.Agent == "" {
		o.Agent = it.Agent
	}
	if o.ReqSeq == 0 {
		o.ReqSeq = it.Seq
	}
	won, err := s.claim(ctx, o)
	if errors.Is(err, errResultsFull) {
		// herd_results is full: the answer is sent unstored (no recovery
		// by id for it) rather than never (herd_results_full alerts).
		s.log.Error("herd_results is full: answering without storing the outcome", zap.String("request_id", it.ID))
		if s.OnResultsFull != nil {
			s.OnResultsFull()
		}
		won, err = true, nil
	}
	if err != nil {
		return false, err
	}
	if !won {
		s.answerResend(ctx, f)
		return false, nil
	}
	if f.DeadLetter != "" {
		s.DeadLetter(ctx, it, f.DeadLetter)
	}
	if f.Won != nil {
		f.Won(o)
	}
	s.send(it, o, f.Chunk, f.Seq)
	if f.Event != nil {
		ev := f.Event
		ev.ID, ev.Agent, ev.Priority, ev.Op = it.ID, it.Agent, string(it.Priority), string(it.Op)
		if ev.Model == "" {
			ev.Model = it.Model
		}
		ev.Status, ev.Cache, ev.QueueMs, ev.TotalMs = o.Status, o.Cache, o.QueueMs, o.TotalMs
		if !o.OK() {
			ev.Code = string(o.Code())
		}
		s.events.Request(ev)
	}
	return true, nil
}

// claim stores o as its request's outcome (outcome.Store.ClaimResult),
// retrying with one token while JetStream does not answer.
func (s *Settler) claim(ctx context.Context, o *outcome.Outcome) (bool, error) {
	token := s.claims.Token(o.RequestID)
	deadline := time.Now().Add(s.retry)
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		won, err := s.store.ClaimResult(cctx, o, token)
		cancel()
		if err == nil {
			return won, nil
		}
		if wire.QueueFull(err) {
			return false, errResultsFull
		}
		if time.Now().Add(backoff).After(deadline) {
			s.claims.Failed(o.RequestID, token)
			return false, fmt.Errorf("%w: %w", ErrNotStored, err)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// Recover settles a redelivered request whose outcome may already be
// stored. It reports whether one is: then the caller has its answer (or
// gets it now, when the stored outcome is this process's own claim whose
// acknowledgement was lost: it was never sent) and the request must not
// run again. An error means the store could not be asked.
func (s *Settler) Recover(ctx context.Context, it job.Item) (stored *outcome.Outcome, resent bool, err error) {
	o, err := s.store.Result(ctx, it.ID)
	if err != nil || o == nil {
		return nil, false, err
	}
	if s.claims.Stored(it.ID, o.Claim) {
		s.send(it, o, nil, 0)
		return o, true, nil
	}
	return o, false, nil
}

// answerResend gives a request whose outcome another run stored that
// outcome, when it is another message than the one that run settled: the
// same request sent again under its id (after JetStream's duplicate
// window) while the first was still running. Its caller gets the one
// outcome on its own reply subject. Another delivery of the same message
// gets nothing: its caller was answered.
//
// When the stored outcome is another agent's (it used the same unscoped
// id), this request still gets an answer: its own outcome, sent without
// being stored (the id's stored outcome is the other agent's, which this
// agent may not read).
func (s *Settler) answerResend(ctx context.Context, f Final) {
	it := f.Item
	if it.Seq == 0 || it.Reply == "" {
		return
	}
	o, err := s.store.Result(ctx, it.ID)
	if err != nil || o == nil || o.ReqSeq == 0 || o.ReqSeq == it.Seq {
		return
	}
	if owner := o.Owner(); owner != "" && owner != it.Agent {
		s.send(it, f.Outcome, f.Chunk, f.Seq)
		return
	}
	s.send(it, o, nil, 0)
}

// Resend sends a stored outcome again, to the reply subject of a request
// re-sent under the same id.
func (s *Settler) Resend(it job.Item, o *outcome.Outcome) { s.send(it, o, nil, 0) }

// send publishes o to the request's reply subject, if it has one.
func (s *Settler) send(it job.Item, o *outcome.Outcome, chunk json.RawMessage, seq int) {
	if it.Reply == "" {
		return
	}
	m := o.Msg(it.Reply)
	if chunk != nil {
		m.Data = chunk
	}
	if it.Stream {
		m.Header.Set(wire.HdrSeq, strconv.Itoa(seq))
	}
	if err := s.nc.PublishMsg(m); err != nil {
		s.log.Warn("reply", zap.String("request_id", it.ID), zap.Error(err))
	}
}

// DeadLetter records a request that could not be served in HERD_DLQ with
// its reason. The dead letter carries the request id as its Nats-Msg-Id,
// so a request dead-lettered again (a crash before its acknowledgement)
// is stored once.
func (s *Settler) DeadLetter(ctx context.Context, it job.Item, reason string) {
	if _, err := s.js.PublishMsg(context.WithoutCancel(ctx), it.DeadLetter(reason)); err != nil {
		s.log.Error("dead letter", zap.String("request_id", it.ID), zap.Error(err))
		return
	}
	if s.OnDeadLetter != nil {
		s.OnDeadLetter()
	}
	s.log.Warn("dead letter", zap.String("request_id", it.ID), zap.String("reason", reason))
}
