package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// maxDeliveries is the part of JetStream's max-deliveries advisory herd
// reads.
type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// subscribeMaxDeliveries settles what JetStream gives up on, until ctx
// ends or the subscriptions are removed: a request or a batch delivered
// queue.max_deliver times without being acknowledged, because whoever took
// it crashed or stopped on every delivery (a worker's own last delivery
// settles its requests itself). JetStream then stops delivering the
// message and announces it with a max-deliveries advisory, a plain NATS
// message that is lost when no dispatcher listens; without this its
// requests would never get an outcome. One dispatcher of the queue group
// takes each advisory.
func (d *Dispatcher) subscribeMaxDeliveries(ctx context.Context) ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, stream := range []string{wire.StreamReq, wire.StreamBatch} {
		s, err := d.nc.QueueSubscribe(wire.MaxDeliveriesAdvisory(stream)+".*", "herd-dispatchers", func(m *nats.Msg) {
			d.onMaxDeliveries(ctx, m)
		})
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe to max-deliveries advisories of %s: %w", stream, err)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

// onMaxDeliveries dead-letters and answers every request of the message an
// advisory names that has no outcome yet, then deletes the message (a
// work-queue stream keeps a message it gave up on).
func (d *Dispatcher) onMaxDeliveries(ctx context.Context, m *nats.Msg) {
	var a maxDeliveries
	if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
		d.log.Warn("unreadable max-deliveries advisory", zap.ByteString("advisory", m.Data))
		return
	}
	log := d.log.With(zap.String("stream", a.Stream), zap.String("consumer", a.Consumer), zap.Uint64("seq", a.StreamSeq), zap.Uint64("deliveries", a.Deliveries))
	s, err := d.js.Stream(ctx, a.Stream)
	if err != nil {
		log.Error("given-up message not settled: stream", zap.Error(err))
		return
	}
	raw, err := s.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return // acknowledged or settled meanwhile
	}
	if err != nil {
		log.Error("given-up message not settled: read", zap.Error(err))
		return
	}
	var items []job.Item
	who := "dispatcher"
	switch a.Stream {
	case wire.StreamBatch:
		who = "worker"
		var b job.Batch
		if err := json.Unmarshal(raw.Data, &b); err != nil {
			log.Error("given-up batch undecodable", zap.Error(err))
		}
		items = b.Items
	case wire.StreamReq:
		items = []job.Item{storedRequest(raw)}
	}
	reason := fmt.Sprintf("delivered %d times (queue.max_deliver) without being settled: the %s that took it failed or stopped every time",
		a.Deliveries, who)
	for _, it := range items {
		d.giveUp(ctx, it, reason)
	}
	if err := s.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("delete given-up message", zap.Error(err))
	}
	log.Warn("message given up by JetStream dead-lettered", zap.Int("requests", len(items)))
}

// storedRequest reads a request stored in HERD_REQ.
func storedRequest(raw *jetstream.RawStreamMsg) job.Item {
	it := job.Item{ID: raw.Header.Get(wire.HdrMsgID), Reply: raw.Header.Get(wire.HdrReplyTo), Body: raw.Data, Received: raw.Time}
	p, agent, err := wire.ParseDoor(raw.Subject)
	if err != nil {
		p, agent = wire.Low, "unknown"
	}
	it.Priority, it.Agent = p, agent
	if r, err := request.Decode(raw.Data, request.Limits{}); err == nil {
		it.Op, it.Model, it.Stream = r.Op, r.Model, r.Stream
	}
	return it
}

// giveUp gives a request JetStream gave up on its final outcome, unless it
// has one: a dead letter with reason, and an internal error reply.
func (d *Dispatcher) giveUp(ctx context.Context, it job.Item, reason string) {
	if it.ID == "" || !wire.ValidToken(it.ID) {
		return
	}
	// The outcome is claimed before it is given, as a worker's is: the
	// worker of the last delivery may still be running the request (its
	// in-progress acks lost, say) and claim its own outcome meanwhile; only
	// the first one stored is given. When the store cannot be asked the
	// request is answered anyway: the message is deleted after this and
	// nobody else would.
	o := outcome.FromError(it.ID, wire.Errorf(wire.CodeInternal, reason))
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	won, err := d.store.ClaimResult(sctx, o, nuid.Next())
	cancel()
	if err == nil && !won {
		return // answered before JetStream gave up, or meanwhile
	}
	if err != nil {
		d.log.Warn("claim result of a given-up request; answering it anyway", zap.String("request_id", it.ID), zap.Error(err))
	}
	if _, err := d.js.PublishMsg(ctx, it.DeadLetter(reason)); err != nil {
		d.log.Error("dead letter", zap.String("request_id", it.ID), zap.Error(err))
	} else {
		d.m.deadLetters.Inc()
	}
	// A reply subject inside herd's own spaces is never published to (the
	// door refuses it; a stored batch could still carry one).
	if it.Reply != "" && wire.CheckReply(it.Reply) == nil {
		rm := o.Msg(it.Reply)
		if it.Stream {
			rm.Header.Set(wire.HdrSeq, "0")
		}
		if err := d.nc.PublishMsg(rm); err != nil {
			d.log.Warn("reply", zap.String("request_id", it.ID), zap.Error(err))
		}
	}
	if it.Leader && it.Key != "" {
		// Its coalesced followers get the same outcome.
		if b, err := json.Marshal(o); err == nil {
			_ = d.nc.Publish(wire.DoneSubject(it.Key), b)
		}
		_ = d.inflight.Delete(ctx, it.Key, jetstream.LastRevision(it.ClaimRevision))
	}
	d.m.requests.WithLabelValues(string(it.Priority), "dead_letter").Inc()
	d.log.Warn("dead letter", zap.String("request_id", it.ID), zap.String("reason", reason))
}
