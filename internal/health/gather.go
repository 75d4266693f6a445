package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// Gatherer reads a Snapshot from a deployment. Its fields are set by the
// caller; it keeps no other state and may be reused.
type Gatherer struct {
	// JS is the JetStream context to read from. Required.
	JS jetstream.JetStream
	// URL names the NATS server in the snapshot.
	URL string
	// Defs are the expected streams, buckets and consumers. Required.
	Defs *provision.Definitions
	// Ollama are base URLs of Ollama endpoints to probe (GET /api/version
	// and /api/tags); none by default.
	Ollama []string
	// OllamaTimeout bounds each Ollama probe; 0 means 3 s.
	OllamaTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Unreachable returns the snapshot of a NATS server at url that could not
// be reached because of err.
func Unreachable(url string, at time.Time, err error) *Snapshot {
	return &Snapshot{At: at, URL: url, ConnectError: err.Error()}
}

// Gather reads the deployment's state. It blocks until every read has
// answered or ctx ends; a read that fails is recorded in the snapshot, not
// returned, so the snapshot can always be evaluated.
func (g *Gatherer) Gather(ctx context.Context) *Snapshot {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	s := &Snapshot{At: now(), URL: g.URL}
	if _, err := g.JS.AccountInfo(ctx); err != nil {
		switch {
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			s.JetStreamError = "JetStream is not enabled: " + err.Error()
		default:
			s.JetStreamError = err.Error()
		}
		s.Ollama = g.ProbeOllama(ctx)
		return s
	}
	for _, c := range g.Defs.Streams {
		s.Streams = append(s.Streams, g.stream(ctx, c.Name))
	}
	for _, c := range g.Defs.Buckets {
		s.Buckets = append(s.Buckets, g.bucket(ctx, c.Bucket))
	}
	for _, c := range g.Defs.Consumers {
		s.Consumers = append(s.Consumers, g.consumer(ctx, c.Stream, c.Config.Durable))
	}
	sort.SliceStable(s.Consumers, func(i, j int) bool {
		return wire.Priority(s.Consumers[i].Priority).Index() < wire.Priority(s.Consumers[j].Priority).Index()
	})
	s.Consumers = append(s.Consumers, g.batchConsumers(ctx)...)
	g.control(ctx, s)
	g.levels(ctx, s)
	s.Ollama = g.ProbeOllama(ctx)
	return s
}

func (g *Gatherer) stream(ctx context.Context, name string) Stream {
	out := Stream{Name: name}
	st, err := g.JS.Stream(ctx, name)
	if err == nil {
		var info *jetstream.StreamInfo
		if info, err = st.Info(ctx); err == nil {
			out.Msgs, out.Bytes = info.State.Msgs, info.State.Bytes
			if info.State.Msgs > 0 {
				out.LastTime = info.State.LastTime
			}
			return out
		}
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		out.Missing = true
	} else {
		out.Error = err.Error()
	}
	return out
}

func (g *Gatherer) bucket(ctx context.Context, name string) Bucket {
	out := Bucket{Name: name}
	kv, err := g.JS.KeyValue(ctx, name)
	if err == nil {
		var st jetstream.KeyValueStatus
		if st, err = kv.Status(ctx); err == nil {
			out.Values, out.Bytes = st.Values(), st.Bytes()
			return out
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		out.Missing = true
	} else {
		out.Error = err.Error()
	}
	return out
}

func (g *Gatherer) consumer(ctx context.Context, stream, name string) Consumer {
	out := Consumer{Stream: stream, Name: name, Priority: strings.TrimPrefix(name, "req_")}
	c, err := g.JS.Consumer(ctx, stream, name)
	if err == nil {
		var info *jetstream.ConsumerInfo
		if info, err = c.Info(ctx); err == nil {
			g.fill(ctx, &out, info)
			return out
		}
	}
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		out.Missing = true
	} else {
		out.Error = err.Error()
	}
	return out
}

// batchConsumers lists HERD_BATCH's consumers; their models come from
// their filter subjects, herd.batch.<encoded model>.<priority>.
func (g *Gatherer) batchConsumers(ctx context.Context) []Consumer {
	st, err := g.JS.Stream(ctx, wire.StreamBatch)
	if err != nil {
		return nil // reported by the stream check
	}
	var out []Consumer
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		c := Consumer{Stream: wire.StreamBatch, Name: info.Name}
		if parts := strings.Split(info.Config.FilterSubject, "."); len(parts) == 4 {
			if m, err := wire.DecodeModel(parts[2]); err == nil {
				c.Model = m
			}
			c.Priority = parts[3]
		}
		g.fill(ctx, &c, info)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Model != out[j].Model {
			return out[i].Model < out[j].Model
		}
		return wire.Priority(out[i].Priority).Index() < wire.Priority(out[j].Priority).Index()
	})
	return out
}

// fill copies the consumer's counters and finds the store time of its
// oldest waiting message: the first message on its filter subject after
// its ack floor. Herd's request and batch streams are work queues, so
// that message is unacknowledged.
func (g *Gatherer) fill(ctx context.Context, c *Consumer, info *jetstream.ConsumerInfo) {
	c.Pending, c.AckPending, c.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
	c.MaxAckPending = info.Config.MaxAckPending
	if c.Pending == 0 && c.AckPending == 0 {
		return
	}
	st, err := g.JS.Stream(ctx, c.Stream)
	if err != nil {
		return
	}
	var opts []jetstream.GetMsgOpt
	if f := info.Config.FilterSubject; f != "" {
		opts = append(opts, jetstream.WithGetMsgSubject(f))
	}
	if m, err := st.GetMsg(ctx, info.AckFloor.Stream+1, opts...); err == nil {
		c.Oldest = m.Time
	}
}

// control reads worker registrations, breaker decisions and the capture
// switch from herd_control.
func (g *Gatherer) control(ctx context.Context, s *Snapshot) {
	kv, err := g.JS.KeyValue(ctx, wire.BucketControl)
	if err != nil {
		s.ControlError = fmt.Sprintf("bucket %s: %v", wire.BucketControl, err)
		return
	}
	var errs []error
	errs = append(errs, each(ctx, kv, registry.KeyPrefix+">", func(e jetstream.KeyValueEntry) {
		var r registry.Registration
		if json.Unmarshal(e.Value(), &r) == nil {
			s.Workers = append(s.Workers, r)
		}
	}))
	errs = append(errs, each(ctx, kv, control.BreakerPrefix+">", func(e jetstream.KeyValueEntry) {
		var b control.Breaker
		if json.Unmarshal(e.Value(), &b) == nil {
			if b.Model == "" {
				b.Model, _ = control.ModelFromBreakerKey(e.Key())
			}
			s.Breakers = append(s.Breakers, b)
		}
	}))
	switch e, err := kv.Get(ctx, capture.KeyEnabled); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		errs = append(errs, err)
	default:
		s.Capture = string(e.Value())
	}
	if err := errors.Join(errs...); err != nil {
		s.ControlError = fmt.Sprintf("bucket %s: %v", wire.BucketControl, err)
	}
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].ID < s.Workers[j].ID })
	sort.Slice(s.Breakers, func(i, j int) bool { return s.Breakers[i].Model < s.Breakers[j].Model })
}

// each calls fn with the current value of every key matching pattern.
func each(ctx context.Context, kv jetstream.KeyValue, pattern string, fn func(jetstream.KeyValueEntry)) error {
	w, err := kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return ctx.Err()
			}
			if e == nil { // the current values have all been sent
				return nil
			}
			fn(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ProbeOllama asks every endpoint in g.Ollama for its version and models
// (GET /api/version and /api/tags), each within g.OllamaTimeout. It
// blocks until all answered or failed; failures are in the results.
func (g *Gatherer) ProbeOllama(ctx context.Context) []Ollama {
	timeout := g.OllamaTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	var out []Ollama
	for _, u := range g.Ollama {
		o := Ollama{URL: u}
		if err := probe(ctx, &o, timeout); err != nil {
			o.Error = err.Error()
		}
		out = append(out, o)
	}
	return out
}

func probe(ctx context.Context, o *Ollama, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := ollama.NewClient(o.URL, timeout)
	if err != nil {
		return err
	}
	if o.Version, err = c.Version(ctx); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	list, err := c.List(ctx)
	if err != nil {
		return fmt.Errorf("tags: %w", err)
	}
	for _, m := range list.Models {
		o.Models = append(o.Models, m.Name)
	}
	slices.Sort(o.Models)
	return nil
}
