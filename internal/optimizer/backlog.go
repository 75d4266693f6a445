package optimizer

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
)

// backlog is a model's batches in HERD_BATCH that no worker has taken yet.
type backlog struct {
	batches int
	oldest  time.Duration
}

// backlogs reads, for each model, the batches waiting in HERD_BATCH (its
// batch consumers' undelivered messages) and the age of the oldest: the
// queue beyond what the workers claimed and report. A model whose
// consumers cannot be read is left out. It waits at most 2s in all.
func (s *Service) backlogs(models []string, now time.Time) map[string]backlog {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := map[string]backlog{}
	for _, m := range models {
		var b backlog
		for _, p := range wire.Priorities {
			cons, err := s.js.Consumer(ctx, wire.StreamBatch, wire.ConsumerName(m, p))
			if err != nil {
				continue
			}
			info := cons.CachedInfo()
			if info.NumPending == 0 {
				continue
			}
			b.batches += int(info.NumPending)
			// The first message of the consumer's subject after the last
			// one delivered is the oldest waiting.
			str, err := s.batchStream(ctx)
			if err != nil {
				continue
			}
			first, err := str.GetMsg(ctx, info.Delivered.Stream+1, jetstream.WithGetMsgSubject(wire.BatchSubject(m, p)))
			if err != nil {
				continue // taken between the two reads
			}
			b.oldest = max(b.oldest, now.Sub(first.Time))
		}
		if b.batches > 0 {
			out[m] = b
		}
	}
	return out
}

// batchStream returns the HERD_BATCH handle, kept between ticks.
func (s *Service) batchStream(ctx context.Context) (jetstream.Stream, error) {
	if s.batches != nil {
		return s.batches, nil
	}
	str, err := s.js.Stream(ctx, wire.StreamBatch)
	if err != nil {
		return nil, err
	}
	s.batches = str
	return str, nil
}

// withBacklog adds each model's waiting batches (at least one request
// each) to its queue.
func withBacklog(d map[string]policy.Demand, b map[string]backlog) {
	for m, x := range d {
		if bl, ok := b[m]; ok {
			x.QueueDepth += bl.batches
			x.QueueAge = max(x.QueueAge, bl.oldest)
			d[m] = x
		}
	}
}
