package capture

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/wire"
)

// DefaultWindow is how many records a Publisher publishes before it waits
// for their acknowledgements.
const DefaultWindow = 256

// Publisher publishes records into HERD_CAPTURE, keeping their original
// times, for herd capture import and herd loadgen --stream. Unlike
// Recorder it never drops: it publishes asynchronously and waits for the
// acknowledgements of every window of records. It is not safe for
// concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	window  int
	pending []jetstream.PubAckFuture
	acked   int
}

// NewPublisher returns a publisher on js that waits for acknowledgements
// every window records (DefaultWindow when window <= 0).
func NewPublisher(js jetstream.JetStream, window int) *Publisher {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Publisher{js: js, window: window}
}

// Publish publishes rec. Once a window of records is outstanding it
// blocks until they are acknowledged, and returns the first publish error
// or ctx's error.
func (p *Publisher) Publish(ctx context.Context, rec *Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m := nats.NewMsg(rec.Subject())
	m.Data = b
	f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream(wire.StreamCapture))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p.pending = append(p.pending, f)
	if len(p.pending) >= p.window {
		return p.Flush(ctx)
	}
	return nil
}

// Flush blocks until every outstanding record is acknowledged; it returns
// the first publish error or ctx's error.
func (p *Publisher) Flush(ctx context.Context) error {
	defer func() { p.pending = p.pending[:0] }()
	for _, f := range p.pending {
		select {
		case <-f.Ok():
			p.acked++
		case err := <-f.Err():
			return fmt.Errorf("publish: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Acked returns how many records JetStream has acknowledged.
func (p *Publisher) Acked() int { return p.acked }
