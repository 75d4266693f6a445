package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/wire"
)

// A non-streaming caller receives nothing before its answer, so its
// leaving cannot be seen from chunks (gone.go). While such a call runs,
// the worker probes for its callers: it publishes an empty message with
// the Herd-Probe header on the sibling of each reply subject
// (wire.ProbeSubject: the last token replaced by one no request uses),
// with a reply subject of its own. A client whose request/reply inbox is
// one wildcard subscription (nats.go's "_INBOX.<nuid>.*", herd's SDK)
// receives the probe there and drops it; once its connection is gone
// nothing subscribes to the sibling, and NATS answers the probe with a
// no-responders status. A client that subscribes only its exact reply
// subject never has interest in the sibling, so the first probe, sent
// when the call starts, decides: a call whose callers do not all have
// interest then is not probed (and never canceled by probing). Callers
// that had interest and then have none for agentGoneAfter (the streaming
// rule: longer than a reconnect) are gone: the call is canceled and
// answered 499 canceled. A call of several callers (an embed batch) is
// canceled only when all of them are gone. For agentGoneAfter after the
// worker's own connection reconnected (a restarted server), absence does
// not count: the callers are reconnecting too.

// probeEvery is how often the callers of a running non-streaming call
// are probed.
const probeEvery = time.Second

// probeFlush bounds the wait for the server to have handled a round of
// probes; a round that takes longer decides nothing.
const probeFlush = 5 * time.Second

// prober probes the callers of running calls on one connection.
type prober struct {
	nc *nats.Conn
	// every is the time between probe rounds, grace how long every caller
	// must have had no interest before the call is given up, flush the
	// bound on one round.
	every, grace, flush time.Duration
}

// probeResult is what watch found out about a call's callers.
type probeResult int

const (
	// probeEnded: the call ended (ctx) with callers present.
	probeEnded probeResult = iota
	// probeNotApplied: a caller had no interest in its probe subject when
	// the call started (it subscribes its exact reply subject, or it left
	// while the request was queued), or a reply cannot be probed.
	probeNotApplied
	// probeGone: every caller has had no interest for grace.
	probeGone
)

// watch probes the sibling subjects of replies until ctx ends or every
// caller has had no interest for p.grace. It blocks.
func (p prober) watch(ctx context.Context, replies []string) probeResult {
	var subjects []string
	seen := map[string]bool{}
	for _, r := range replies {
		s, ok := wire.ProbeSubject(r)
		if !ok {
			return probeNotApplied
		}
		if !seen[s] {
			seen[s] = true
			subjects = append(subjects, s)
		}
	}
	if len(subjects) == 0 {
		return probeNotApplied
	}
	// The no-responders statuses come back on a subscription of this
	// call's own: NATS sends a status to the publisher's subscription
	// that matches the reply, so it must not also match the streaming
	// one (goneRoot.*).
	root := goneRoot + "." + nuid.Next()
	statuses := make(chan *nats.Msg, 4*len(subjects)+16)
	sub, err := p.nc.ChanSubscribe(root+".>", statuses)
	if err != nil {
		return probeNotApplied
	}
	defer func() { _ = sub.Unsubscribe() }()

	absent, ok := p.round(ctx, root, 0, subjects, statuses)
	if !ok || absent > 0 {
		return probeNotApplied
	}
	t := time.NewTicker(p.every)
	defer t.Stop()
	var since time.Time // when the current spell of absent rounds was first seen; zero: none
	reconnects := p.nc.Stats().Reconnects
	var quiet time.Time // absence does not count before
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return probeEnded
		case <-t.C:
		}
		absent, ok := p.round(ctx, root, n, subjects, statuses)
		now := time.Now() // the round's answers are in: what it saw holds now
		if r := p.nc.Stats().Reconnects; r != reconnects {
			// This connection came back (the server restarted, say): the
			// callers are reconnecting too; give them the grace first.
			reconnects, quiet = r, now.Add(p.grace)
		}
		if !ok || absent < len(subjects) || now.Before(quiet) {
			since = time.Time{}
			continue
		}
		// Gone only after every round for p.grace saw no caller, timed from
		// the first of them being answered, not sent: a round sent just
		// before the caller left must not shorten the grace.
		if since.IsZero() {
			since = now
		} else if now.Sub(since) >= p.grace {
			return probeGone
		}
	}
}

// round publishes probe n to each subject and returns how many found no
// subscriber. ok is false when the server could not be asked (the
// connection is reconnecting, the round took longer than p.flush).
func (p prober) round(ctx context.Context, root string, n int, subjects []string, statuses chan *nats.Msg) (absent int, ok bool) {
	prefix := root + "." + strconv.Itoa(n) + "."
	for i, s := range subjects {
		m := nats.NewMsg(s)
		m.Header.Set(wire.HdrProbe, "1")
		m.Reply = prefix + strconv.Itoa(i)
		if err := p.nc.PublishMsg(m); err != nil {
			return 0, false
		}
	}
	fctx, cancel := context.WithTimeout(ctx, p.flush)
	defer cancel()
	if err := p.nc.FlushWithContext(fctx); err != nil {
		return 0, false
	}
	// The server handled the probes before it answered the flush, and a
	// status for this connection is queued in order on it: every status of
	// this round is in the channel now.
	for {
		select {
		case m := <-statuses:
			if len(m.Subject) > len(prefix) && m.Subject[:len(prefix)] == prefix && m.Header.Get("Status") == "503" {
				absent++
			}
		default:
			return absent, true
		}
	}
}

// watchCallers probes the callers of a running non-streaming call (items)
// until the returned stop is called; when every caller is gone it marks
// them canceled and calls cancel. Streaming items and items without a
// reply subject are left to gone.go and are not probed.
func (w *Worker) watchCallers(ctx context.Context, items []job.Item, cancel context.CancelFunc) (stop func()) {
	var replies []string
	for _, it := range items {
		if it.Stream || it.Reply == "" {
			return func() {}
		}
		replies = append(replies, it.Reply)
	}
	if len(replies) == 0 {
		return func() {}
	}
	ctx, end := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		p := prober{nc: w.nc, every: probeEvery, grace: agentGoneAfter, flush: probeFlush}
		switch p.watch(ctx, replies) {
		case probeNotApplied:
			w.log.Debug("callers not probed: no interest in the probe subject at the start", zap.String("request_id", items[0].ID), zap.Int("callers", len(items)))
		case probeGone:
			now := time.Now()
			for _, it := range items {
				w.cancels.Add(it.Agent, it.ID)
			}
			w.log.Info("non-streaming caller gone; canceling its call", zap.String("request_id", items[0].ID), zap.Int("callers", len(items)), zap.Duration("running", now.Sub(start)))
			cancel()
		}
	}()
	return func() { end(); <-done }
}
