package modelbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// Wire names of the bench results (see docs/protocol.md).
const (
	// StreamName is the stream that keeps bench results
	// (streams/stream-HERD_BENCH.json).
	StreamName = wire.StreamBench
	// SubjectPrefix starts a result subject:
	// herd.bench.<encoded model>.<profile>.
	SubjectPrefix = wire.BenchPrefix
)

// Subject returns herd.bench.<encoded model>.<profile>, where a result of
// model under profile is stored. An empty profile gives the wildcard for
// every profile, an empty model the one for every model.
func Subject(model, profile string) string {
	if model == "" {
		return SubjectPrefix + ".>"
	}
	if profile == "" {
		profile = "*"
	}
	return SubjectPrefix + "." + wire.EncodeModel(model) + "." + profile
}

// Store keeps bench results in HERD_BENCH, one message per model and run.
type Store struct {
	st jetstream.Stream
	js jetstream.JetStream
}

// OpenStore returns the store. When HERD_BENCH does not exist yet (a herd
// started before it was defined) it is created from its definition file;
// an existing stream is left as its operator configured it. It blocks
// until JetStream answered or ctx ends.
func OpenStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	st, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		var cfg jetstream.StreamConfig
		if cfg, err = definition(); err == nil {
			st, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				st, err = js.Stream(ctx, StreamName)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	return &Store{st: st, js: js}, nil
}

// definition returns HERD_BENCH's configuration from streams/.
func definition() (jetstream.StreamConfig, error) {
	defs, err := provision.Load(provision.Overrides{})
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	for _, c := range defs.Streams {
		if c.Name == StreamName {
			return c, nil
		}
	}
	return jetstream.StreamConfig{}, fmt.Errorf("%w: no definition of %s", provision.ErrDefinition, StreamName)
}

// Save stores r (without its samples) on Subject(r.Model, r.Profile). A
// repeated Save of the same run and model is stored once. It blocks until
// JetStream acknowledged or ctx ends.
func (s *Store) Save(ctx context.Context, r *Result) error {
	c := *r
	c.Samples = nil
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	m := nats.NewMsg(Subject(r.Model, r.Profile))
	m.Data = b
	if _, err := s.js.PublishMsg(ctx, m, jetstream.WithMsgID(r.ID+"/"+r.Model)); err != nil {
		return fmt.Errorf("store bench result of %s: %w", r.Model, err)
	}
	return nil
}

// Last returns the latest stored run of model under profile, or ErrNoRuns.
// It blocks until JetStream answered or ctx ends.
func (s *Store) Last(ctx context.Context, model, profile string) (*Result, error) {
	m, err := s.st.GetLastMsgForSubject(ctx, Subject(model, profile))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w of %s under %s", ErrNoRuns, model, profile)
	}
	if err != nil {
		return nil, fmt.Errorf("last bench run of %s: %w", model, err)
	}
	var r Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("bench result %d: %w", m.Sequence, err)
	}
	return &r, nil
}

// History returns the stored runs of model (every model when empty) under
// profile (every profile when empty), oldest first; with limit > 0 only the
// latest limit. It reads what was stored when it started and blocks until
// then or until ctx ends.
func (s *Store) History(ctx context.Context, model, profile string, limit int) ([]Result, error) {
	cons, err := s.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{Subject(model, profile)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", StreamName, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", StreamName, err)
	}
	var out []Result
	for pending := info.NumPending; pending > 0; {
		wctx, cancel := context.WithTimeout(ctx, historyWait)
		m, err := cons.Next(jetstream.FetchContext(wctx))
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				break // the rest aged out while being read
			}
			return nil, fmt.Errorf("read %s: %w", StreamName, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		pending = meta.NumPending
		var r Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			return nil, fmt.Errorf("bench result %d: %w", meta.Sequence.Stream, err)
		}
		out = append(out, r)
		if limit > 0 && len(out) > limit {
			out = out[1:]
		}
	}
	return out, nil
}

// historyWait bounds how long History waits for one message, so that a
// message deleted by its max age while being read cannot hang it.
const historyWait = 5 * time.Second
