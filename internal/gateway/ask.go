package gateway

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/wire"
)

// noResponders is the Status header NATS puts on the answer to a request
// that nothing subscribes to.
const noResponders = "503"

// answer is herd's final reply to an ask.
type answer struct {
	status int
	msg    *nats.Msg
}

// ask sends body to herd's ask door as c, calls chunk with each streamed
// chunk's body in order, and returns the final reply. It blocks until the
// final reply comes or ctx ends; then it returns ctx's error and, unless c
// is Keyed, cancels the request in herd (herd.cancel.<agent>.<id>). A
// Keyed call (the caller will retry under its key) goes on: stayFor
// listens for it until it ends. A final reply from
// NATS that no dispatcher listens is 503 backend_unavailable.
func (g *Gateway) ask(ctx context.Context, c Caller, body []byte, chunk func([]byte) error) (answer, error) {
	// One subscription per call on a fresh inbox, with a wildcard: the
	// worker's presence probes (the sibling <inbox>.herd~probe) find it
	// and are dropped below, so a non-streaming call whose gateway died is
	// stopped in herd too.
	base := g.nc.NewInbox()
	sub, err := g.nc.SubscribeSync(base + ".*")
	if err != nil {
		return answer{}, fmt.Errorf("subscribe: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = sub.Unsubscribe()
		}
	}()
	m := nats.NewMsg(wire.AskSubject(c.Priority, c.Agent))
	m.Reply = base + ".r"
	m.Data = body
	m.Header.Set(wire.HdrMsgID, c.ID)
	if c.Cache != "" {
		m.Header.Set(wire.HdrCache, c.Cache)
	}
	if c.Timeout != "" {
		m.Header.Set(wire.HdrTimeout, c.Timeout)
	}
	if err := g.nc.PublishMsg(m); err != nil {
		return answer{}, fmt.Errorf("ask: %w", err)
	}
	for {
		r, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if c.Keyed {
					keep = true
					go g.stayFor(sub)
				} else {
					_ = g.nc.Publish(wire.CancelSubject(c.Agent, c.ID), nil)
				}
				return answer{}, ctx.Err()
			}
			return answer{}, fmt.Errorf("ask: %w", err)
		}
		if r.Header.Get(wire.HdrProbe) != "" {
			continue
		}
		if s := r.Header.Get(wire.HdrStatus); s != "" {
			st, err := strconv.Atoi(s)
			if err != nil {
				return answer{}, fmt.Errorf("ask: %s %q: %w", wire.HdrStatus, s, err)
			}
			return answer{status: st, msg: r}, nil
		}
		if r.Header.Get("Status") == noResponders && len(r.Data) == 0 {
			return answer{}, errNoDispatcher
		}
		if err := chunk(r.Data); err != nil {
			if c.Keyed {
				keep = true
				go g.stayFor(sub)
			} else {
				_ = g.nc.Publish(wire.CancelSubject(c.Agent, c.ID), nil)
			}
			return answer{}, err
		}
	}
}

// stayFor keeps the reply subscription of a keyed call whose caller left
// until its final reply comes (or api.timeout, else 30 minutes, passes),
// so that herd runs it to its end and stores the outcome the caller's
// retry gets: while it listens, the worker's presence probes and stream
// chunks find a subscriber and do not stop the call.
func (g *Gateway) stayFor(sub *nats.Subscription) {
	defer func() { _ = sub.Unsubscribe() }()
	limit := g.cfg.Timeout
	if limit <= 0 {
		limit = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		r, err := sub.NextMsgWithContext(ctx)
		if err != nil || r.Header.Get(wire.HdrStatus) != "" || r.Header.Get("Status") == noResponders {
			return
		}
	}
}

// errNoDispatcher is returned by ask when no dispatcher listens on the
// ask door.
var errNoDispatcher = wire.Errorf(wire.CodeBackendUnavailable, "no dispatcher answers herd's ask door")
