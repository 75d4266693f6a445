package dispatcher

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/coalesce"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/wire"
)

// This file is the dispatcher's side of the coalescing protocol
// (internal/coalesce): it holds followers, answers them with their
// leader's outcome and runs them again when the leader gives none.

// follower is what the dispatcher holds for a request waiting for its
// key's leader.
func follower(p *pending) coalesce.Follower[*pending] {
	return coalesce.Follower[*pending]{ID: p.item.ID, Deadline: p.item.Deadline, Held: p}
}

// join puts a request whose cache key is being computed into that key's
// group and reports true; it reports false when the request leads the key
// (and must run).
func (d *Dispatcher) join(ctx context.Context, p *pending) bool {
	key, id := p.item.Key, p.item.ID
	if limit := d.followerCap[p.item.Priority.Index()].Load(); limit > 0 && d.heldAt(p.item.Priority) >= limit {
		d.m.followersCapped.Inc()
		return false // runs on its own: its priority's ack budget is for requests that run
	}
	if d.followers.HoldLocal(key, follower(p)) {
		return true
	}
	leader, rev, err := d.coal.Claim(ctx, key, id)
	if err != nil {
		d.log.Warn("coalescing claim failed; running without coalescing", zap.String("request_id", id), zap.Error(err))
		return false
	}
	if !d.followers.Hold(d.now(), key, leader, follower(p)) {
		p.item.Leader, p.item.ClaimRevision = true, rev
		return false
	}
	return true
}

// onDone answers the group waiting for a key whose leader finished.
func (d *Dispatcher) onDone(ctx context.Context, m *nats.Msg) {
	key, o, err := coalesce.Done(m)
	if err != nil {
		d.log.Warn("bad done announcement", zap.Error(err))
		return
	}
	d.resolve(ctx, key, o.RequestID, o)
}

// resolve answers every request held for key with the leader's outcome,
// or runs them again when it is no answer for them.
func (d *Dispatcher) resolve(ctx context.Context, key, leader string, o *outcome.Outcome) {
	held := d.followers.Take(key, leader)
	if held == nil {
		return
	}
	if !coalesce.AnswersFollowers(o) {
		d.coal.Drop(ctx, key, leader)
		d.log.Info("coalescing leader canceled; running its followers", zap.String("leader", leader), zap.Int("followers", len(held)))
		d.busy.Add(1)
		go func() {
			defer d.settled()
			d.runAgain(ctx, pendings(held))
		}()
		return
	}
	for _, h := range held {
		f := *o
		f.RequestID, f.Cache, f.Agent = h.ID, wire.CacheCoalesced, ""
		d.answer(ctx, h.Held, &f, "coalesced")
	}
}

func pendings(fs []coalesce.Follower[*pending]) []*pending {
	ps := make([]*pending, len(fs))
	for i, f := range fs {
		ps[i] = f.Held
	}
	return ps
}

// runAgain handles requests held for a leader (or a worker) that will not
// answer them as if they had just arrived: the first of them leads the key
// now.
func (d *Dispatcher) runAgain(ctx context.Context, held []*pending) {
	for _, h := range held {
		d.busy.Add(1)
		d.handleMsg(ctx, h.msg, h.item.Priority, true)
		d.settled()
	}
}

// keepFollowers answers the followers whose deadline passed, keeps the
// others in progress when keep, and re-checks groups that waited long.
func (d *Dispatcher) keepFollowers(ctx context.Context, now time.Time, keep bool) {
	expired, waiting, checks := d.followers.Due(now, 2*time.Second, time.Second)
	for _, h := range expired {
		d.answer(ctx, h.Held, outcome.FromError(h.ID, wire.Errorf(wire.CodeDeadlineExceeded, "deadline passed while waiting for an identical request")), "deadline_exceeded")
	}
	if keep {
		for _, h := range waiting {
			_ = h.Held.msg.InProgress()
		}
	}
	for _, c := range checks {
		d.recheck(ctx, c.Key, c.Leader)
	}
}

// recheck settles a group that has waited a while: answered from
// herd_results when its leader finished (the announcement was missed), or
// released to run again when the leader's claim is gone.
func (d *Dispatcher) recheck(ctx context.Context, key, leader string) {
	if leader != "" {
		o, err := d.store.Result(ctx, leader)
		if err != nil {
			return
		}
		if o != nil {
			d.resolve(ctx, key, leader, o)
			return
		}
	}
	if leading, err := d.coal.Leading(ctx, key, leader); err != nil || leading {
		return // still running, or the bucket cannot be asked now
	}
	held := d.followers.Take(key, leader)
	if held == nil {
		return
	}
	d.log.Info("coalescing leader gone; running its followers", zap.String("leader", leader), zap.Int("followers", len(held)))
	d.runAgain(ctx, pendings(held))
}

// heldAt returns how many followers of priority p are held here.
func (d *Dispatcher) heldAt(p wire.Priority) int64 {
	var n int64
	d.followers.Each(func(_ string, f coalesce.Follower[*pending]) {
		if f.Held.item.Priority == p {
			n++
		}
	})
	return n
}
