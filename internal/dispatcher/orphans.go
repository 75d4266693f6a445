package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/settle"
	"github.com/sutazai/herd/internal/wire"
)

// orphanSweepEvery is how often a dispatcher looks for batches that wait
// in HERD_BATCH for a model no live worker serves.
const orphanSweepEvery = 2 * time.Second

// sweepOrphans settles, until ctx ends, the batches published while a
// worker served their model and left waiting when every such worker went
// away (a model taken out of service, workers that never come back): once
// no live worker has served the model for NoWorkerWait, each request of
// such a batch is answered 504 when its deadline passed, else 404
// model_not_found, and the batch is acknowledged. No batch waits for
// ever. The dispatchers share the batch consumers, so each batch is taken
// by one of them; the claim of each outcome keeps a request that a worker
// answered meanwhile to that answer.
func (d *Dispatcher) sweepOrphans(ctx context.Context) {
	t := time.NewTicker(orphanSweepEvery)
	defer t.Stop()
	unservedSince := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.sweepOnce(ctx, unservedSince)
	}
}

// sweepOnce is one look at the batch consumers; unservedSince remembers,
// per model with waiting batches, since when no live worker served it.
func (d *Dispatcher) sweepOnce(ctx context.Context, unservedSince map[string]time.Time) {
	st, err := d.js.Stream(ctx, wire.StreamBatch)
	if err != nil {
		return
	}
	now := d.now()
	waiting := map[string]bool{}
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		if info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 {
			continue
		}
		model, ok := batchModel(info.Config.FilterSubject)
		if !ok {
			continue
		}
		waiting[model] = true
		if d.served(model) {
			delete(unservedSince, model)
			continue
		}
		since, seen := unservedSince[model]
		if !seen {
			unservedSince[model] = now
			continue
		}
		if now.Sub(since) < d.cfg.NoWorkerWait {
			continue
		}
		// A batch a worker that went away had taken is delivered again,
		// once its ack wait passed, only to someone who pulls: this fetch.
		d.settleOrphans(ctx, st, info.Name, model)
	}
	for m := range unservedSince {
		if !waiting[m] {
			delete(unservedSince, m)
		}
	}
}

// batchModel returns the model of a batch consumer's filter subject,
// herd.batch.<encoded model>.<priority>.
func batchModel(filter string) (string, bool) {
	rest, ok := strings.CutPrefix(filter, wire.BatchPrefix+".")
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", false
	}
	m, err := wire.DecodeModel(rest[:i])
	return m, err == nil
}

// settleOrphans takes the waiting batches of one consumer and answers
// each of their requests.
func (d *Dispatcher) settleOrphans(ctx context.Context, st jetstream.Stream, consumer, model string) {
	cons, err := st.Consumer(ctx, consumer)
	if err != nil {
		return
	}
	b, err := cons.Fetch(16, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return
	}
	for msg := range b.Messages() {
		var jb job.Batch
		if err := json.Unmarshal(msg.Data(), &jb); err != nil {
			d.log.Error("orphaned batch undecodable; left for its dead letter", zap.Error(err))
			continue
		}
		handedBack := false
		for _, it := range jb.Items {
			if err := d.settleOrphan(ctx, it, model); err != nil {
				d.log.Warn("orphaned request not settled; batch handed back", zap.String("request_id", it.ID), zap.Error(err))
				handedBack = true
			}
		}
		if handedBack {
			_ = msg.NakWithDelay(retryDelay)
			continue
		}
		_ = msg.Ack()
		d.log.Warn("batch no worker served settled", zap.String("model", model), zap.String("batch", jb.ID), zap.Int("requests", len(jb.Items)))
	}
}

// settleOrphan answers one request of an orphaned batch: 504 when its
// deadline passed, else 404.
func (d *Dispatcher) settleOrphan(ctx context.Context, it job.Item, model string) error {
	e := wire.Errorf(wire.CodeModelNotFound, fmt.Sprintf("no worker served model %q for %s (queue.no_worker_wait) while the request waited in its batch", model, d.cfg.NoWorkerWait))
	if !it.Deadline.IsZero() && !d.now().Before(it.Deadline) {
		e = wire.Errorf(wire.CodeDeadlineExceeded, "deadline passed while no worker served the model")
	}
	o := outcome.FromError(it.ID, e)
	if !it.Received.IsZero() {
		o.TotalMs = d.now().Sub(it.Received).Milliseconds()
	}
	won, err := d.settler.Settle(ctx, settle.Final{Item: it, Outcome: o, Event: &events.Request{At: d.now(), Dispatcher: true}})
	if err != nil {
		return err
	}
	if won && it.Leader && it.Key != "" {
		_ = d.coal.Release(ctx, it.Key, it.ClaimRevision, o)
	}
	if won {
		d.m.requests.WithLabelValues(string(it.Priority), string(e.Code)).Inc()
	}
	return nil
}
