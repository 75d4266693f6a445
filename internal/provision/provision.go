package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/streams"
)

// ErrDefinition is returned when a definition file cannot be used.
var ErrDefinition = errors.New("bad stream definition")

// Overrides are settings from herd's configuration that replace the values
// in the definition files.
type Overrides struct {
	// Replicas for every stream and bucket; 0 keeps the files' value.
	Replicas int
	// MaxRequests bounds HERD_REQ (queued requests); 0 keeps the file's.
	MaxRequests int64
	// MaxPerAgent bounds one agent's requests waiting in HERD_REQ, per
	// priority and door (one subject each); 0 keeps the file's.
	MaxPerAgent int64
	// ResultsTTL is how long herd_results keeps an answer; 0 keeps the file's.
	ResultsTTL time.Duration
	// AckWait and MaxDeliver for the request and batch consumers; 0 keeps
	// the files' values.
	AckWait    time.Duration
	MaxDeliver int
	// CaptureMaxAge and CaptureMaxBytes bound HERD_CAPTURE; 0 keeps the
	// file's values.
	CaptureMaxAge   time.Duration
	CaptureMaxBytes int64
}

// Definitions are the parsed definition files.
type Definitions struct {
	Streams   []jetstream.StreamConfig
	Buckets   []jetstream.KeyValueConfig
	Consumers []Consumer
	// BatchTemplate is the configuration of the per-model batch consumers.
	BatchTemplate jetstream.ConsumerConfig
}

// Consumer is a consumer and its stream.
type Consumer struct {
	Stream string
	Config jetstream.ConsumerConfig
}

type file struct {
	Kind   string          `json:"kind"`
	Stream string          `json:"stream"`
	Config json.RawMessage `json:"config"`
}

// Load parses the embedded definitions and applies the overrides.
func Load(o Overrides) (*Definitions, error) {
	names, err := fs.Glob(streams.FS, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	d := &Definitions{}
	for _, name := range names {
		raw, err := fs.ReadFile(streams.FS, name)
		if err != nil {
			return nil, err
		}
		var f file
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDefinition, name, err)
		}
		if err := d.add(name, f, o); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// add adds the definition f, read from the file name, with the overrides
// o applied. It returns an ErrDefinition when f cannot be used.
func (d *Definitions) add(name string, f file, o Overrides) error {
	switch f.Kind {
	case "stream":
		var c jetstream.StreamConfig
		if err := json.Unmarshal(f.Config, &c); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrDefinition, name, err)
		}
		d.Streams = append(d.Streams, o.stream(c))
	case "kv":
		var c jetstream.KeyValueConfig
		if err := json.Unmarshal(f.Config, &c); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrDefinition, name, err)
		}
		d.Buckets = append(d.Buckets, o.bucket(c))
	case "consumer", "consumer_template":
		var c jetstream.ConsumerConfig
		if err := json.Unmarshal(f.Config, &c); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrDefinition, name, err)
		}
		c = o.consumer(f.Stream, c)
		if f.Kind == "consumer_template" {
			d.BatchTemplate = c
			return nil
		}
		if f.Stream == "" {
			return fmt.Errorf("%w: %s: consumer without stream", ErrDefinition, name)
		}
		d.Consumers = append(d.Consumers, Consumer{Stream: f.Stream, Config: c})
	default:
		return fmt.Errorf("%w: %s: unknown kind %q", ErrDefinition, name, f.Kind)
	}
	return nil
}

// stream returns stream c with the overrides applied: replicas, the
// bounds of HERD_REQ and those of the capture stream.
func (o Overrides) stream(c jetstream.StreamConfig) jetstream.StreamConfig {
	if o.Replicas > 0 {
		c.Replicas = o.Replicas
	}
	if c.Name == wire.StreamReq && o.MaxRequests > 0 {
		c.MaxMsgs = o.MaxRequests
	}
	if c.Name == wire.StreamReq && o.MaxPerAgent > 0 {
		c.MaxMsgsPerSubject, c.DiscardNewPerSubject = o.MaxPerAgent, true
	}
	if c.Name == wire.StreamCapture {
		if o.CaptureMaxAge > 0 {
			c.MaxAge = o.CaptureMaxAge
		}
		if o.CaptureMaxBytes > 0 {
			c.MaxBytes = o.CaptureMaxBytes
		}
	}
	return c
}

// bucket returns bucket c with the overrides applied: replicas, and the
// results' TTL.
func (o Overrides) bucket(c jetstream.KeyValueConfig) jetstream.KeyValueConfig {
	if o.Replicas > 0 {
		c.Replicas = o.Replicas
	}
	if c.Bucket == wire.BucketResults && o.ResultsTTL > 0 {
		c.TTL = o.ResultsTTL
	}
	return c
}

// consumer returns consumer c of stream with the overrides applied.
func (o Overrides) consumer(stream string, c jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	// The queue settings are the request and batch consumers';
	// the advisories consumer retries until it has settled each
	// one (max_deliver -1).
	if stream != wire.StreamAdvisories {
		if o.AckWait > 0 {
			c.AckWait = o.AckWait
		}
		if o.MaxDeliver != 0 {
			c.MaxDeliver = o.MaxDeliver
		}
	}
	return c
}

// Ensure creates or updates every stream, bucket and consumer. It is safe
// to run from many processes at once. It blocks until the server answered
// or ctx ends.
func (d *Definitions) Ensure(ctx context.Context, js jetstream.JetStream) error {
	for _, c := range d.Streams {
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			return fmt.Errorf("stream %s: %w", c.Name, err)
		}
	}
	for _, c := range d.Buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, c); err != nil {
			return fmt.Errorf("bucket %s: %w", c.Bucket, err)
		}
	}
	for _, c := range d.Consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("consumer %s on %s: %w", c.Config.Durable, c.Stream, err)
		}
	}
	return nil
}

// BatchConsumer returns the configuration of the batch consumer for model
// and priority.
func (d *Definitions) BatchConsumer(model string, p wire.Priority) jetstream.ConsumerConfig {
	c := d.BatchTemplate
	c.Durable = wire.ConsumerName(model, p)
	c.FilterSubject = wire.BatchSubject(model, p)
	return c
}

// Bound is a connection's JetStream context and the buckets every
// service uses.
type Bound struct {
	JS       jetstream.JetStream
	Inflight jetstream.KeyValue
	Control  jetstream.KeyValue
}

// Bind opens JetStream on nc and binds the herd_inflight and herd_control
// buckets; they must exist (Ensure).
func Bind(ctx context.Context, nc *nats.Conn) (*Bound, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	b := &Bound{JS: js}
	for name, dst := range map[string]*jetstream.KeyValue{wire.BucketInflight: &b.Inflight, wire.BucketControl: &b.Control} {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", name, err)
		}
		*dst = kv
	}
	return b, nil
}

// Watch calls fn for every change of the keys matching pattern in kv,
// starting with their current values, until ctx ends; it re-opens the
// watch when it fails. It blocks.
func Watch(ctx context.Context, kv jetstream.KeyValue, pattern string, fn func(jetstream.KeyValueEntry)) {
	for ctx.Err() == nil {
		w, err := kv.Watch(ctx, pattern)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e != nil {
				fn(e)
			}
		}
		_ = w.Stop()
	}
}
