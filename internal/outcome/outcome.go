// Package outcome is a request's final outcome (an answer or an error) and
// how it travels: as a reply message with herd's headers, as an entry in
// herd_results or herd_cache, and as a coalescing announcement.
package outcome

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/wire"
)

// Outcome is a final answer or error for one request.
type Outcome struct {
	RequestID string `json:"id"`
	// Status is HTTP-style: 200 for an answer, 400 or more for an error.
	Status int `json:"status"`
	// Body is exactly what Ollama returned (done: true), or a wire.ErrorBody.
	Body json.RawMessage `json:"body"`
	// Cache is hit, miss or coalesced.
	Cache     string `json:"cache,omitempty"`
	QueueMs   int64  `json:"queue_ms,omitempty"`
	TotalMs   int64  `json:"total_ms,omitempty"`
	BatchSize int    `json:"batch_size,omitempty"`
	Worker    string `json:"worker,omitempty"`
	// Model is the model that answered (Herd-Model): the one chosen for a
	// "model": "auto" request or a breaker's fallback included.
	Model string `json:"model,omitempty"`
	// Claim identifies the write that stored this outcome in herd_results
	// (see ClaimResult); empty elsewhere.
	Claim string `json:"claim,omitempty"`
	// Agent is the agent whose request this is (the agent in its subject):
	// only it may read the outcome (a lookup, a request re-sent under the
	// same id). Empty in outcomes stored before herd recorded it.
	Agent string `json:"agent,omitempty"`
	// ReqSeq is the HERD_REQ sequence of the request message this outcome
	// settled: another delivery of that message (a consumer leader change
	// delivers it again as a first delivery) is not a request sent again.
	ReqSeq uint64 `json:"req_seq,omitempty"`
}

// Owner returns the agent that owns o: its recorded agent, else the owner
// its scoped id names (wire.IDOwner), else "".
func (o *Outcome) Owner() string {
	if o.Agent != "" {
		return o.Agent
	}
	owner, _ := wire.IDOwner(o.RequestID)
	return owner
}

// Code returns the error code of an error outcome, "" for an answer.
func (o *Outcome) Code() wire.Code {
	if o.OK() {
		return ""
	}
	var eb wire.ErrorBody
	_ = json.Unmarshal(o.Body, &eb)
	return eb.Code
}

// ErrNotOutcome is returned when a herd_results or herd_cache entry does not
// hold an outcome herd wrote (no request id, no status, no body): something
// else was stored under the key, and herd does not answer with it.
var ErrNotOutcome = errors.New("not an outcome")

// valid reports whether o has what every outcome herd stores has.
func (o *Outcome) valid() bool {
	return o.RequestID != "" && o.Status >= 100 && o.Status <= 599 && len(o.Body) > 0
}

// FromError returns the error outcome for err.
func FromError(id string, err *wire.Error) *Outcome {
	return &Outcome{RequestID: id, Status: err.Code.Status(), Body: err.Body()}
}

// OK reports whether o is an answer rather than an error.
func (o *Outcome) OK() bool { return o.Status < 400 }

// Msg returns the reply message for o on subject, with herd's headers.
func (o *Outcome) Msg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = o.Body
	o.SetHeaders(m.Header)
	return m
}

// SetHeaders writes herd's reply headers for o into h.
func (o *Outcome) SetHeaders(h nats.Header) {
	h.Set(wire.HdrStatus, strconv.Itoa(o.Status))
	h.Set(wire.HdrRequestID, o.RequestID)
	if o.Cache != "" {
		h.Set(wire.HdrCache, o.Cache)
	}
	h.Set(wire.HdrQueueMs, strconv.FormatInt(o.QueueMs, 10))
	h.Set(wire.HdrTotalMs, strconv.FormatInt(o.TotalMs, 10))
	if o.BatchSize > 0 {
		h.Set(wire.HdrBatchSize, strconv.Itoa(o.BatchSize))
	}
	if o.Worker != "" {
		h.Set(wire.HdrWorker, o.Worker)
	}
	if o.Model != "" {
		h.Set(wire.HdrModel, o.Model)
	}
}

// Store reads and writes outcomes in herd_results and herd_cache.
type Store struct {
	js      jetstream.JetStream
	results jetstream.KeyValue
	cache   jetstream.KeyValue
}

// NewStore binds the buckets; they must exist (internal/provision).
func NewStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	results, err := js.KeyValue(ctx, wire.BucketResults)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", wire.BucketResults, err)
	}
	cache, err := js.KeyValue(ctx, wire.BucketCache)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", wire.BucketCache, err)
	}
	return &Store{js: js, results: results, cache: cache}, nil
}

// SaveResult stores o under its request id. It blocks until stored.
func (s *Store) SaveResult(ctx context.Context, o *Outcome) error {
	b, _ := json.Marshal(o)
	if _, err := s.results.Put(ctx, o.RequestID, b); err != nil {
		return fmt.Errorf("save result %s: %w", o.RequestID, err)
	}
	return nil
}

// SaveResultAsync starts storing o under its request id and returns the
// future of the store's acknowledgement, for callers that store many
// results and wait for them together.
func (s *Store) SaveResultAsync(o *Outcome) (jetstream.PubAckFuture, error) {
	b, _ := json.Marshal(o)
	m := nats.NewMsg("$KV." + wire.BucketResults + "." + o.RequestID)
	m.Data = b
	f, err := s.js.PublishMsgAsync(m)
	if err != nil {
		return nil, fmt.Errorf("save result %s: %w", o.RequestID, err)
	}
	return f, nil
}

// ClaimResult stores o under its request id unless an outcome is stored
// there already, and reports whether o is the request's outcome: the first
// one stored wins, so a request that ran twice is answered once. claim names
// this attempt to store (the same for retries of one attempt, new for every
// run of the request): a stored outcome with the same claim is this
// attempt's own earlier write whose acknowledgement was lost, and o is set
// to it, so that what is sent is what is stored. Equal content is not
// enough: two runs of an invalid request store the same bytes. It sets
// o.Claim and blocks until the server answered.
func (s *Store) ClaimResult(ctx context.Context, o *Outcome, claim string) (bool, error) {
	o.Claim = claim
	b, _ := json.Marshal(o)
	_, err := s.results.Create(ctx, o.RequestID, b)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("claim result %s: %w", o.RequestID, err)
	}
	e, err := s.results.Get(ctx, o.RequestID)
	if err != nil {
		return false, fmt.Errorf("claim result %s: %w", o.RequestID, err)
	}
	var stored Outcome
	if json.Unmarshal(e.Value(), &stored) != nil || !stored.valid() {
		// Not an outcome (something else wrote the key): it answers nobody,
		// so this outcome replaces it, unless another write came first.
		if _, err := s.results.Update(ctx, o.RequestID, b, e.Revision()); err != nil {
			return false, fmt.Errorf("claim result %s: replace what is not an outcome: %w", o.RequestID, err)
		}
		return true, nil
	}
	if stored.Claim != claim {
		return false, nil
	}
	*o = stored // this attempt's earlier write: what is stored is the answer
	return true, nil
}

// Touch stores id's outcome again, unchanged, so that it lives another
// results TTL from now. An outcome that is gone (expired) stays gone.
func (s *Store) Touch(ctx context.Context, id string) error {
	e, err := s.results.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("touch result %s: %w", id, err)
	}
	if _, err := s.results.Update(ctx, id, e.Value(), e.Revision()); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("touch result %s: %w", id, err)
	}
	return nil
}

// MarkStream records, before the first chunk of a streaming request is
// sent, that the request's caller is receiving chunks (key "<id>.stream"
// in herd_results, which no request id can be). It reports true for the
// first mark: false means an earlier run sent chunks already, and a new
// run would splice a second generation onto them.
func (s *Store) MarkStream(ctx context.Context, id string) (bool, error) {
	_, err := s.results.Create(ctx, id+".stream", []byte("1"))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mark stream %s: %w", id, err)
	}
	return true, nil
}

// ResultsTTL returns how long herd_results keeps an outcome.
func (s *Store) ResultsTTL(ctx context.Context) (time.Duration, error) {
	st, err := s.results.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", wire.BucketResults, err)
	}
	return st.TTL(), nil
}

// Result returns the outcome stored for id, or nil when there is none.
func (s *Store) Result(ctx context.Context, id string) (*Outcome, error) {
	return get(ctx, s.results, id)
}

// SaveCache stores an answer under key for ttl. It blocks until stored.
func (s *Store) SaveCache(ctx context.Context, key string, o *Outcome, ttl time.Duration) error {
	b, _ := json.Marshal(o)
	m := nats.NewMsg("$KV." + wire.BucketCache + "." + key)
	m.Data = b
	if _, err := s.js.PublishMsg(ctx, m, jetstream.WithMsgTTL(ttl)); err != nil {
		return fmt.Errorf("save cache: %w", err)
	}
	return nil
}

// Cached returns the cached answer for key, or nil when there is none.
func (s *Store) Cached(ctx context.Context, key string) (*Outcome, error) {
	return get(ctx, s.cache, key)
}

func get(ctx context.Context, kv jetstream.KeyValue, key string) (*Outcome, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	var o Outcome
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w: %w", kv.Bucket(), key, ErrNotOutcome, err)
	}
	if !o.valid() {
		return nil, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, ErrNotOutcome)
	}
	return &o, nil
}
