package dispatcher

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/wire"
)

// subscribeLookup serves herd.lookup.<agent>.<id> (one dispatcher of the
// queue group answers): the stored outcome of request id, as the reply it
// was, when the request is agent's (the agent in the subject it came
// through: outcome.Owner), whatever door it came through and whoever
// chose the id; otherwise, or when there is none yet, an empty message
// without Herd-Status. Access control lets an agent publish only under
// its own name, so an agent reads only outcomes of its own requests,
// without access to herd_results.
func (d *Dispatcher) subscribeLookup(ctx context.Context) (*nats.Subscription, error) {
	return d.nc.QueueSubscribe(wire.LookupPrefix+".*.*", "herd-dispatchers", func(m *nats.Msg) {
		if wire.CheckNATSReply(m.Reply) != nil {
			return
		}
		rest := strings.TrimPrefix(m.Subject, wire.LookupPrefix+".")
		agent, id, _ := strings.Cut(rest, ".")
		if !wire.ValidToken(id) || !wire.ValidToken(agent) {
			_ = d.nc.Publish(m.Reply, nil)
			return
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		o, err := d.store.Result(lctx, id)
		if err != nil || o == nil || o.Owner() != agent {
			_ = d.nc.Publish(m.Reply, nil)
			return
		}
		_ = d.nc.PublishMsg(o.Msg(m.Reply))
	})
}
