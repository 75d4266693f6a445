// Package capture records the requests agents send, with their original
// timestamps, in the HERD_CAPTURE stream, and reads them back from the
// stream or from a JSON-lines file so that traffic can be replayed
// elsewhere (internal/replay).
package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// Record is one captured request.
type Record struct {
	// Time is when JetStream stored the original request.
	Time     time.Time     `json:"t"`
	ID       string        `json:"id"`
	Priority wire.Priority `json:"priority"`
	Agent    string        `json:"agent"`
	// Model and Op are read from the body; empty when it did not decode.
	Model string `json:"model,omitempty"`
	Op    string `json:"op,omitempty"`
	// Body is the request body as the agent sent it. A body that was not
	// JSON is kept as a JSON string and Raw is set.
	Body json.RawMessage `json:"body"`
	Raw  bool            `json:"raw,omitempty"`
	// Headers are the request headers that change how herd serves it
	// (Herd-Cache, Herd-Cache-TTL, Herd-Timeout).
	Headers map[string]string `json:"headers,omitempty"`
}

// Payload returns the bytes to send when replaying r.
func (r *Record) Payload() []byte {
	if r.Raw {
		var s string
		if json.Unmarshal(r.Body, &s) == nil {
			return []byte(s)
		}
	}
	return r.Body
}

// ReplayedHeaders are the request headers a capture keeps.
var ReplayedHeaders = []string{wire.HdrCache, wire.HdrCacheTTL, wire.HdrTimeout}

// Subject returns the HERD_CAPTURE subject of r: herd.capture.<priority>.<agent>.
func (r *Record) Subject() string {
	return wire.CapturePrefix + "." + string(r.Priority) + "." + r.Agent
}

// ErrBadRecord is returned for a line or message that is not a Record.
var ErrBadRecord = errors.New("bad capture record")

// KeyEnabled is the herd_control key that switches capture at run time:
// "on" or "off".
const KeyEnabled = "capture.enabled"

// Recorder writes records to HERD_CAPTURE without ever waiting: a record
// that cannot be queued is dropped and counted, so capture never delays or
// drops live requests. It is safe for concurrent use.
type Recorder struct {
	js         jetstream.JetStream
	def        bool
	enabled    atomic.Bool
	maxPending int
	written    atomic.Int64
	dropped    atomic.Int64
}

// NewRecorder returns a recorder on nc that keeps at most maxPending
// records in flight (default 1024 when 0). It has its own JetStream
// context, so other asynchronous publishes never use up its budget and
// it drops before the client's own limit could make it wait.
func NewRecorder(nc *nats.Conn, enabled bool, maxPending int) (*Recorder, error) {
	if maxPending <= 0 {
		maxPending = 1024
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*maxPending))
	if err != nil {
		return nil, err
	}
	r := &Recorder{js: js, def: enabled, maxPending: maxPending}
	r.enabled.Store(enabled)
	return r, nil
}

// SetEnabled switches capture on or off.
func (r *Recorder) SetEnabled(on bool) { r.enabled.Store(on) }

// Enabled reports whether capture is on.
func (r *Recorder) Enabled() bool { return r.enabled.Load() }

// Written and Dropped count records handed to JetStream and dropped.
func (r *Recorder) Written() int64 { return r.written.Load() }

// Dropped counts records dropped because too many were in flight.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Record queues rec for HERD_CAPTURE when capture is on. It never blocks.
func (r *Recorder) Record(rec *Record) {
	if r == nil || !r.enabled.Load() {
		return
	}
	if r.js.PublishAsyncPending() >= r.maxPending {
		r.dropped.Add(1)
		return
	}
	b, err := json.Marshal(rec)
	if err != nil {
		r.dropped.Add(1)
		return
	}
	m := nats.NewMsg(rec.Subject())
	m.Data = b
	if _, err := r.js.PublishMsgAsync(m); err != nil {
		r.dropped.Add(1)
		return
	}
	r.written.Add(1)
}

// Watch keeps the recorder's switch in step with herd_control's
// capture.enabled key until ctx ends; a deleted key means the configured
// default. It blocks.
func (r *Recorder) Watch(ctx context.Context, control jetstream.KeyValue) {
	provision.Watch(ctx, control, KeyEnabled, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			r.SetEnabled(r.def)
			return
		}
		r.SetEnabled(string(e.Value()) == "on")
	})
}

// WriteJSONL writes records as JSON lines.
func WriteJSONL(w io.Writer, recs []Record) error {
	enc := json.NewEncoder(w)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSONL reads JSON-lines records, calling fn for each in file order.
// It stops at the first bad record (Record.Validate) with an error
// wrapping ErrBadRecord that names its line; Reader reads past them.
func ReadJSONL(rd io.Reader, fn func(Record) error) error {
	r := NewReader(rd)
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// ReadStream reads every record in HERD_CAPTURE whose own time is in
// [since, until) (zero bounds are open), in stream order, calling fn for
// each. Records are filtered on their recorded time, not on when they were
// stored, so imported captures and several dispatchers are read whole. It
// returns when it has read the last record that existed when it started.
func ReadStream(ctx context.Context, js jetstream.JetStream, since, until time.Time, fn func(Record) error) error {
	st, err := js.Stream(ctx, wire.StreamCapture)
	if err != nil {
		return fmt.Errorf("stream %s: %w", wire.StreamCapture, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return err
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				return nil
			}
			return err
		}
		meta, _ := m.Metadata()
		var rec Record
		if err := json.Unmarshal(m.Data(), &rec); err != nil {
			return fmt.Errorf("%w: stream sequence %d: %v", ErrBadRecord, meta.Sequence.Stream, err)
		}
		in := (since.IsZero() || !rec.Time.Before(since)) && (until.IsZero() || rec.Time.Before(until))
		if in {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if meta.Sequence.Stream >= last {
			return nil
		}
	}
}
