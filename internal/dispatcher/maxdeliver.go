package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/settle"
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

// consumeAdvisories settles what JetStream gives up on, until the
// returned iterator is stopped: a request or a batch delivered
// queue.max_deliver times without being acknowledged, because whoever
// took it crashed or stopped on every delivery (a worker's own last
// delivery settles its requests itself). JetStream then stops delivering
// the message and announces it with a max-deliveries advisory, which
// HERD_ADVISORIES keeps (a plain message would be lost while no
// dispatcher listens); the dispatchers share its durable consumer, and an
// advisory is acknowledged only once every request it names has its
// outcome, so a dispatcher killed while it settles one leaves it to the
// next. Settling goes on with a context shutdown does not cancel.
func (d *Dispatcher) consumeAdvisories(ctx context.Context) (jetstream.MessagesContext, error) {
	cons, err := d.js.Consumer(ctx, wire.StreamAdvisories, wire.AdvisoriesConsumer)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", wire.AdvisoriesConsumer, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(8), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", wire.StreamAdvisories, err)
	}
	sctx := context.WithoutCancel(ctx)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				d.log.Warn("pull advisories", zap.Error(err))
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err := d.onMaxDeliveries(sctx, m.Data()); err != nil {
				d.log.Warn("given-up message not settled yet; trying again", zap.Error(err))
				_ = m.NakWithDelay(2 * time.Second)
				continue
			}
			_ = m.Ack()
		}
	}()
	return it, nil
}

// onMaxDeliveries dead-letters and answers every request of the message an
// advisory names that has no outcome yet, then deletes the message (a
// work-queue stream keeps a message it gave up on). It returns an error
// when a request could not be settled: the advisory is then tried again.
func (d *Dispatcher) onMaxDeliveries(ctx context.Context, data []byte) error {
	var a maxDeliveries
	if err := json.Unmarshal(data, &a); err != nil || a.StreamSeq == 0 {
		d.log.Warn("unreadable max-deliveries advisory", zap.ByteString("advisory", data))
		return nil
	}
	log := d.log.With(zap.String("stream", a.Stream), zap.String("consumer", a.Consumer), zap.Uint64("seq", a.StreamSeq), zap.Uint64("deliveries", a.Deliveries))
	s, err := d.js.Stream(ctx, a.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", a.Stream, err)
	}
	raw, err := s.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // acknowledged or settled meanwhile
	}
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", a.Stream, a.StreamSeq, err)
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
		if err := d.giveUp(ctx, it, reason); err != nil {
			return err
		}
	}
	if err := s.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("delete given-up message", zap.Error(err))
	}
	log.Warn("message given up by JetStream dead-lettered", zap.Int("requests", len(items)))
	return nil
}

// storedRequest reads a request stored in HERD_REQ.
func storedRequest(raw *jetstream.RawStreamMsg) job.Item {
	it := job.Item{ID: raw.Header.Get(wire.HdrMsgID), Reply: raw.Header.Get(wire.HdrReplyTo), Body: raw.Data, Received: raw.Time}
	p, agent, asked, err := wire.ParseStored(raw.Subject)
	if err != nil {
		p, agent = wire.Low, "unknown"
	}
	it.Priority, it.Agent, it.Asked = p, agent, asked
	if r, err := request.Decode(raw.Data, request.Limits{}); err == nil {
		it.Op, it.Model, it.Stream = r.Op, r.Model, r.Stream
	}
	return it
}

// giveUp gives a request JetStream gave up on its final outcome, unless it
// has one: a dead letter with reason, and an internal error reply. The
// outcome is claimed first, as a worker's is: the worker of the last
// delivery may still be running the request (its in-progress acks lost,
// say) and claim its own outcome meanwhile; only the first one stored is
// given. It returns an error when the claim could not be stored: nothing
// was sent, and the advisory is tried again.
func (d *Dispatcher) giveUp(ctx context.Context, it job.Item, reason string) error {
	if it.ID == "" || !wire.ValidToken(it.ID) {
		return nil
	}
	// A reply subject inside herd's own spaces is never published to (the
	// door refuses it; a stored message could still carry one).
	if it.Reply != "" && d.replyCheck(it)(it.Reply) != nil {
		it.Reply = ""
	}
	o := outcome.FromError(it.ID, wire.Errorf(wire.CodeInternal, reason))
	won, err := d.settler.Settle(ctx, settle.Final{Item: it, Outcome: o, DeadLetter: reason,
		Event: &events.Request{At: d.now(), Dispatcher: true}})
	if err != nil {
		return fmt.Errorf("give up %s: %w", it.ID, err)
	}
	if !won {
		return nil // answered before JetStream gave up, or meanwhile
	}
	if it.Leader && it.Key != "" {
		_ = d.coal.Release(ctx, it.Key, it.ClaimRevision, o) // its followers get the same outcome
	}
	d.m.requests.WithLabelValues(string(it.Priority), string(wire.CodeInternal)).Inc() // its reply; herd_dispatcher_dead_letters_total counts it too
	return nil
}

// replyCheck returns the reply check for a stored item: a request of the
// ask door may answer a mapped reply (its own NATS reply), no other.
func (d *Dispatcher) replyCheck(it job.Item) func(string) error {
	if it.Asked {
		return wire.CheckNATSReply
	}
	return wire.CheckReply
}
