package dispatcher

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/wire"
)

// ModelList is the answer on wire.ModelsSubject.
type ModelList struct {
	// Models are the models live workers serve, by name, with their digests.
	Models map[string]string `json:"models"`
}

// serveModels answers wire.ModelsSubject (one dispatcher of the queue
// group) with the models live workers serve, until ctx ends. It is how
// the HTTP gateway lists models: under access control the gateway is a
// user of the agents' account and may not read herd_control, and this
// answer says no more than /api/tags shows anyway.
func (d *Dispatcher) serveModels(ctx context.Context) error {
	s, err := d.nc.QueueSubscribe(wire.ModelsSubject, "herd-dispatchers", func(m *nats.Msg) {
		if wire.CheckNATSReply(m.Reply) != nil {
			return
		}
		b, err := json.Marshal(ModelList{Models: d.Models()})
		if err != nil {
			return
		}
		_ = d.nc.Publish(m.Reply, b)
	})
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { _ = s.Unsubscribe() })
	return nil
}
