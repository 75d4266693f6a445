// Package client is the Go SDK for agents that call herd. It takes and
// returns Ollama's own types (github.com/ollama/ollama/api) and adds herd's
// options (priority, agent name, timeout, cache policy) and metadata.
//
// Requests are published durably to JetStream under a request id
// (Nats-Msg-Id), retried under the same id when the publish is not
// acknowledged, and answered on a per-client inbox. A publish that JetStream
// reports as a duplicate finds its answer in herd_results.
//
// On a server with herd's access control (docs/protocol.md, "Permissions")
// an agent connects as its own user with the inbox prefix its permissions
// allow and tells the client with WithInboxPrefix: request ids are then
// scoped to the agent and a duplicate's answer is asked of a dispatcher
// (herd.lookup.<agent>.<id>), since agents may not read herd_results:
//
//	nc, _ := nats.Connect(url, nats.UserInfo("planner", password),
//		nats.CustomInboxPrefix(client.AgentInbox("planner")))
//	c, _ := client.New(nc, client.WithAgent("planner"), client.WithInboxPrefix(client.AgentInbox("planner")))
//
//	nc, _ := nats.Connect(nats.DefaultURL)
//	c, _ := client.New(nc, client.WithAgent("planner"))
//	resp, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: "herd-tiny", Prompt: "hi"},
//		client.At(client.High), client.Timeout(30*time.Second))
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/backoff"
	"github.com/sutazai/herd/internal/wire"
)

// Priority is a request's priority.
type Priority = wire.Priority

// The priorities.
const (
	High   = wire.High
	Normal = wire.Normal
	Low    = wire.Low
)

// Code is herd's machine-readable error code.
type Code = wire.Code

// Error codes a call can return inside *Error.
const (
	CodeInvalidRequest     = wire.CodeInvalidRequest
	CodeModelNotFound      = wire.CodeModelNotFound
	CodeQueueFull          = wire.CodeQueueFull
	CodeDeadlineExceeded   = wire.CodeDeadlineExceeded
	CodeCanceled           = wire.CodeCanceled
	CodeBreakerOpen        = wire.CodeBreakerOpen
	CodeBackendUnavailable = wire.CodeBackendUnavailable
	CodeInternal           = wire.CodeInternal
)

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("herd client closed")

// Error is an error reply from herd.
type Error struct {
	RequestID string
	Status    int
	Code      Code
	Message   string
	// Retryable says whether the same request may succeed later.
	Retryable bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("herd: %d %s: %s", e.Status, e.Code, e.Message)
}

// Meta is herd's metadata about an answer.
type Meta struct {
	RequestID string
	Status    int
	// Cache is hit, miss or coalesced.
	Cache     string
	QueueMs   int64
	TotalMs   int64
	BatchSize int
	Worker    string
	// Model names the model that answered when herd chose it: the one
	// picked for "model": "auto", or the fallback of a model whose breaker
	// is open (Herd-Model). Empty when the request's own model answered.
	Model string
}

// Client sends requests to herd. It is safe for concurrent use.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	opts   options
	prefix string
	sub    *nats.Subscription

	// mu guards waiters and results.
	mu      sync.Mutex
	waiters map[string]chan *nats.Msg
	results jetstream.KeyValue
	closed  bool
}

type options struct {
	agent          string
	inboxPrefix    string
	priority       Priority
	timeout        time.Duration
	publishRetries int
}

// Option configures a Client.
type Option func(*options) error

// WithAgent names the calling agent (default "agent"): 1-128 characters of
// A-Z a-z 0-9 _ = -.
func WithAgent(name string) Option {
	return func(o *options) error {
		if !wire.ValidToken(name) {
			return fmt.Errorf("agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", name)
		}
		o.agent = name
		return nil
	}
}

// AgentInbox returns the inbox prefix herd's access control allows agent
// to read: "_INBOX.<agent>". Connect with nats.CustomInboxPrefix of it and
// pass it to WithInboxPrefix.
func AgentInbox(agent string) string { return "_INBOX." + agent }

// WithInboxPrefix declares that the connection uses the inbox prefix p
// (nats.CustomInboxPrefix(p); New returns an error when it does not,
// because JetStream acknowledges publishes on the connection's inbox) and
// that the agent may not touch $JS.API: request ids are generated as
// "<agent>=<random>" and the answer to a duplicate publish is asked of a
// dispatcher on herd.lookup.<agent>.<id> instead of read from
// herd_results. A RequestID must then start with "<agent>=". Default
// none: the connection's inbox and direct herd_results reads.
func WithInboxPrefix(p string) Option {
	return func(o *options) error {
		if p == "" || strings.ContainsAny(p, "*> \t") || strings.HasSuffix(p, ".") {
			return fmt.Errorf("inbox prefix %q must be a subject without wildcards, spaces or a trailing '.'", p)
		}
		o.inboxPrefix = p
		return nil
	}
}

// WithPriority sets the default priority (default normal).
func WithPriority(p Priority) Option {
	return func(o *options) error {
		if !p.Valid() {
			return fmt.Errorf("priority %q is not high, normal or low", p)
		}
		o.priority = p
		return nil
	}
}

// WithTimeout sets the default time a call may take, sent to herd as
// Herd-Timeout (default none: the context decides).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return errors.New("timeout must not be negative")
		}
		o.timeout = d
		return nil
	}
}

// WithPublishRetries sets how often a publish that JetStream did not
// acknowledge is retried under the same request id (default 5).
func WithPublishRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return errors.New("publish retries must not be negative")
		}
		o.publishRetries = n
		return nil
	}
}

// New returns a client on nc. It subscribes to its own inbox; Close ends it.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	o := options{agent: "agent", priority: Normal, publishRetries: 5}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	if o.inboxPrefix != "" && nc.Opts.InboxPrefix != o.inboxPrefix {
		return nil, fmt.Errorf("connection inbox prefix is %q, want %q: connect with nats.CustomInboxPrefix(%q)", nc.Opts.InboxPrefix, o.inboxPrefix, o.inboxPrefix)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	c := &Client{nc: nc, js: js, opts: o, prefix: nc.NewRespInbox(), waiters: map[string]chan *nats.Msg{}}
	c.sub, err = nc.Subscribe(c.prefix+".*", c.onReply)
	if err != nil {
		return nil, fmt.Errorf("subscribe inbox: %w", err)
	}
	_ = c.sub.SetPendingLimits(-1, -1)
	return c, nil
}

// Close unsubscribes the inbox; calls in progress return ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	for id, ch := range c.waiters {
		close(ch)
		delete(c.waiters, id)
	}
	c.mu.Unlock()
	return c.sub.Unsubscribe()
}

func (c *Client) onReply(m *nats.Msg) {
	if m.Header.Get(wire.HdrProbe) != "" {
		return // a worker checking that this client is still here
	}
	id := m.Subject[len(c.prefix)+1:]
	c.mu.Lock()
	ch := c.waiters[id]
	c.mu.Unlock()
	if ch == nil {
		return // a duplicate after the final answer, or a call that gave up
	}
	select {
	case ch <- m:
	default:
		// The call fell behind by 4096 chunks; it will time out rather
		// than block the connection.
	}
}

// CallOption configures one call.
type CallOption func(*call)

type call struct {
	priority Priority
	agent    string
	timeout  time.Duration
	deadline time.Time
	cache    string
	cacheTTL time.Duration
	id       string
}

// At sets the call's priority.
func At(p Priority) CallOption { return func(c *call) { c.priority = p } }

// Agent sets the call's agent name.
func Agent(name string) CallOption { return func(c *call) { c.agent = name } }

// Timeout sets how long herd may take (Herd-Timeout); the answer is 504
// deadline_exceeded after it.
func Timeout(d time.Duration) CallOption { return func(c *call) { c.timeout = d } }

// Deadline sets when herd stops trying (Herd-Deadline).
func Deadline(t time.Time) CallOption { return func(c *call) { c.deadline = t } }

// Cache sets the cache policy: "auto" (default), "off" or "refresh".
func Cache(policy string) CallOption { return func(c *call) { c.cache = policy } }

// CacheTTL sets how long this answer stays cached, and asks for it to be
// cached even when it is not reproducible.
func CacheTTL(d time.Duration) CallOption { return func(c *call) { c.cacheTTL = d } }

// RequestID sets the request id (Nats-Msg-Id) instead of a generated one;
// sending the same id again runs the request once and returns its answer.
func RequestID(id string) CallOption { return func(c *call) { c.id = id } }

// Generate sends an /api/generate request and waits for its answer.
func (c *Client) Generate(ctx context.Context, req *api.GenerateRequest, opts ...CallOption) (*api.GenerateResponse, *Meta, error) {
	var out api.GenerateResponse
	meta, err := c.do(ctx, "generate", req, false, nil, &out, opts)
	if err != nil {
		return nil, meta, err
	}
	return &out, meta, nil
}

// GenerateStream sends a streaming /api/generate request and calls fn for
// each chunk in order, the last with Done set.
func (c *Client) GenerateStream(ctx context.Context, req *api.GenerateRequest, fn func(api.GenerateResponse) error, opts ...CallOption) (*Meta, error) {
	return c.do(ctx, "generate", req, true, func(b []byte) error {
		var r api.GenerateResponse
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		return fn(r)
	}, nil, opts)
}

// Chat sends an /api/chat request and waits for its answer.
func (c *Client) Chat(ctx context.Context, req *api.ChatRequest, opts ...CallOption) (*api.ChatResponse, *Meta, error) {
	var out api.ChatResponse
	meta, err := c.do(ctx, "chat", req, false, nil, &out, opts)
	if err != nil {
		return nil, meta, err
	}
	return &out, meta, nil
}

// ChatStream sends a streaming /api/chat request and calls fn for each
// chunk in order, the last with Done set.
func (c *Client) ChatStream(ctx context.Context, req *api.ChatRequest, fn func(api.ChatResponse) error, opts ...CallOption) (*Meta, error) {
	return c.do(ctx, "chat", req, true, func(b []byte) error {
		var r api.ChatResponse
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		return fn(r)
	}, nil, opts)
}

// Embed sends an /api/embed request and waits for its vectors.
func (c *Client) Embed(ctx context.Context, req *api.EmbedRequest, opts ...CallOption) (*api.EmbedResponse, *Meta, error) {
	var out api.EmbedResponse
	meta, err := c.do(ctx, "embed", req, false, nil, &out, opts)
	if err != nil {
		return nil, meta, err
	}
	return &out, meta, nil
}

// Raw sends a request body as it is (the JSON of an Ollama request plus
// "op") and returns the answer body and metadata. An error reply is
// returned as *Error.
func (c *Client) Raw(ctx context.Context, body []byte, opts ...CallOption) (json.RawMessage, *Meta, error) {
	var out json.RawMessage
	meta, err := c.send(ctx, body, nil, &out, opts)
	return out, meta, err
}

func (c *Client) do(ctx context.Context, op string, req any, stream bool, chunk func([]byte) error, out any, opts []CallOption) (*Meta, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	// Add op and herd's stream flag to Ollama's own JSON.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["op"], _ = json.Marshal(op)
	if op != "embed" {
		m["stream"], _ = json.Marshal(stream)
	}
	body, _ := json.Marshal(m)
	return c.send(ctx, body, chunk, out, opts)
}

func (c *Client) send(ctx context.Context, body []byte, chunk func([]byte) error, out any, opts []CallOption) (*Meta, error) {
	cl, err := c.newCall(opts)
	if err != nil {
		return nil, err
	}
	ch, err := c.addWaiter(cl.id)
	if err != nil {
		return nil, err
	}
	defer c.removeWaiter(cl.id, ch)

	reconnects := c.nc.Stats().Reconnects
	dup, err := c.publish(ctx, requestMsg(cl, c.prefix, body), cl.id)
	if err != nil {
		return nil, err
	}
	return c.await(ctx, cl, ch, dup, reconnects, chunk, out)
}

// newCall applies opts to the client's defaults, gives the call an id
// when it has none, and checks priority, agent and id.
func (c *Client) newCall(opts []CallOption) (call, error) {
	cl := call{priority: c.opts.priority, agent: c.opts.agent, timeout: c.opts.timeout}
	for _, f := range opts {
		f(&cl)
	}
	if !cl.priority.Valid() {
		return cl, fmt.Errorf("priority %q is not high, normal or low", cl.priority)
	}
	if !wire.ValidToken(cl.agent) {
		return cl, fmt.Errorf("agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", cl.agent)
	}
	scoped := c.opts.inboxPrefix != ""
	if cl.id == "" {
		cl.id = nuid.Next()
		if scoped {
			cl.id = wire.ScopedID(cl.agent, cl.id)
		}
	}
	if !wire.ValidToken(cl.id) {
		return cl, fmt.Errorf("request id %q must be 1-128 characters of A-Z a-z 0-9 _ = -", cl.id)
	}
	if owner, ok := wire.IDOwner(cl.id); scoped && (!ok || owner != cl.agent) {
		return cl, fmt.Errorf("request id %q must start with %q (WithInboxPrefix scopes ids to the agent)", cl.id, cl.agent+"=")
	}
	return cl, nil
}

// addWaiter registers the channel that onReply feeds with the replies for id.
// It returns ErrClosed once the client is closed.
func (c *Client) addWaiter(id string) (chan *nats.Msg, error) {
	ch := make(chan *nats.Msg, 4096)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	c.waiters[id] = ch
	return ch, nil
}

// removeWaiter removes the channel addWaiter registered for id, unless another
// call has registered its own since.
func (c *Client) removeWaiter(id string, ch chan *nats.Msg) {
	c.mu.Lock()
	if c.waiters[id] == ch {
		delete(c.waiters, id)
	}
	c.mu.Unlock()
}

// requestMsg is the request as published: body, and the headers that carry
// the call's reply inbox, timeout, deadline and cache policy.
func requestMsg(cl call, prefix string, body []byte) *nats.Msg {
	msg := nats.NewMsg(wire.ReqSubject(cl.priority, cl.agent))
	msg.Data = body
	msg.Header.Set(wire.HdrReplyTo, prefix+"."+cl.id)
	if cl.timeout > 0 {
		msg.Header.Set(wire.HdrTimeout, cl.timeout.String())
	}
	if !cl.deadline.IsZero() {
		msg.Header.Set(wire.HdrDeadline, cl.deadline.UTC().Format(time.RFC3339Nano))
	}
	if cl.cache != "" {
		msg.Header.Set(wire.HdrCache, cl.cache)
	}
	if cl.cacheTTL > 0 {
		msg.Header.Set(wire.HdrCacheTTL, cl.cacheTTL.String())
	}
	return msg
}

// await waits for the answer to the published call on ch, giving each new
// streaming chunk to chunk, until the final reply or ctx ends (then herd is
// told to cancel the request). dup says JetStream had the request already,
// reconnects is the connection's count when it was published.
func (c *Client) await(ctx context.Context, cl call, ch <-chan *nats.Msg, dup bool, reconnects uint64, chunk func([]byte) error, out any) (*Meta, error) {
	// The answer is looked up in herd_results when JetStream had the
	// request already, and after the connection reconnected: a reply sent
	// while it was away is lost (core NATS keeps none), and without a
	// deadline the call would wait forever.
	var poller *time.Ticker
	var poll <-chan time.Time
	startPolling := func(every time.Duration) {
		poller = time.NewTicker(every)
		poll = poller.C
	}
	defer func() {
		if poller != nil {
			poller.Stop()
		}
	}()
	if dup {
		startPolling(200 * time.Millisecond)
	}
	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	// A reply is also lost when the server of the one answering dies just
	// after it was sent: a call that has heard nothing for 5s (no answer,
	// no chunk) looks its answer up, then at doubling intervals up to a
	// minute; a streaming call the same way (a recovered answer gives it
	// only the text it has not seen).
	every := 5 * time.Second
	next := time.Now().Add(every)
	lastSeq := -1
	var streamed [][]byte // the chunks given to chunk, for a recovered answer
	for {
		select {
		case <-ctx.Done():
			// Stop the work: herd cancels a queued or running request.
			_ = c.nc.Publish(wire.CancelSubject(cl.agent, cl.id), nil)
			return &Meta{RequestID: cl.id}, ctx.Err()
		case <-watch.C:
			if poller != nil {
				continue
			}
			reconnected := c.nc.Stats().Reconnects != reconnects
			if reconnected {
				startPolling(time.Second)
			}
			if reconnected || time.Now().After(next) {
				every = min(2*every, time.Minute)
				next = time.Now().Add(every)
				if m, err := c.lookup(ctx, cl.agent, cl.id); err == nil && m != nil {
					return c.recovered(m, chunk, out, streamed)
				}
			}
		case <-poll:
			if m, err := c.lookup(ctx, cl.agent, cl.id); err == nil && m != nil {
				return c.recovered(m, chunk, out, streamed)
			}
		case m, ok := <-ch:
			if !ok {
				return nil, ErrClosed
			}
			if m.Header.Get(wire.HdrStatus) == "" {
				// A streaming chunk.
				seq, _ := strconv.Atoi(m.Header.Get(wire.HdrSeq))
				if seq <= lastSeq || chunk == nil {
					continue
				}
				lastSeq = seq
				next = time.Now().Add(every) // the call is alive: no lookup yet
				streamed = append(streamed, m.Data)
				if err := chunk(m.Data); err != nil {
					_ = c.nc.Publish(wire.CancelSubject(cl.agent, cl.id), nil)
					return &Meta{RequestID: cl.id}, err
				}
				continue
			}
			return c.final(m, chunk, out)
		}
	}
}

// publish stores the request in JetStream, retrying under the same id
// while it is not acknowledged. It reports whether JetStream had it
// already.
func (c *Client) publish(ctx context.Context, msg *nats.Msg, id string) (bool, error) {
	var err error
	wait := 100 * time.Millisecond
	for attempt := 0; attempt <= c.opts.publishRetries; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ack *jetstream.PubAck
		ack, err = c.js.PublishMsg(pctx, msg, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return ack.Duplicate, nil
		}
		if wire.QueueFull(err) {
			return false, &Error{RequestID: id, Status: 429, Code: CodeQueueFull, Message: "herd's request queue is full", Retryable: true}
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(backoff.Jitter(wait)):
		}
		wait = min(wait*2, 2*time.Second)
	}
	return false, fmt.Errorf("publish request %s: %w", id, err)
}

// lookup returns the stored outcome of id as its reply, or nil when there
// is none yet: from a dispatcher (herd.lookup.<agent>.<id>) with
// WithInboxPrefix, else from herd_results.
func (c *Client) lookup(ctx context.Context, agent, id string) (*nats.Msg, error) {
	if c.opts.inboxPrefix != "" {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		m, err := c.nc.RequestWithContext(lctx, wire.LookupSubject(agent, id), nil)
		if err != nil {
			return nil, err
		}
		if m.Header.Get(wire.HdrStatus) == "" {
			return nil, nil
		}
		return m, nil
	}
	// A bounded wait: while the bucket elects a leader a read may get no
	// answer, and the call must keep reading its replies meanwhile.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c.mu.Lock()
	kv := c.results
	c.mu.Unlock()
	if kv == nil {
		var err error
		if kv, err = c.js.KeyValue(ctx, wire.BucketResults); err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.results = kv
		c.mu.Unlock()
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil
		}
		return nil, err
	}
	var o struct {
		Status    int             `json:"status"`
		Body      json.RawMessage `json:"body"`
		Cache     string          `json:"cache"`
		QueueMs   int64           `json:"queue_ms"`
		TotalMs   int64           `json:"total_ms"`
		BatchSize int             `json:"batch_size"`
		Worker    string          `json:"worker"`
	}
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		return nil, err
	}
	m := nats.NewMsg("")
	m.Data = o.Body
	m.Header.Set(wire.HdrStatus, strconv.Itoa(o.Status))
	m.Header.Set(wire.HdrRequestID, id)
	m.Header.Set(wire.HdrCache, o.Cache)
	m.Header.Set(wire.HdrQueueMs, strconv.FormatInt(o.QueueMs, 10))
	m.Header.Set(wire.HdrTotalMs, strconv.FormatInt(o.TotalMs, 10))
	m.Header.Set(wire.HdrBatchSize, strconv.Itoa(o.BatchSize))
	m.Header.Set(wire.HdrWorker, o.Worker)
	return m, nil
}

// final turns the final reply into the result, the metadata or an *Error.
func (c *Client) final(m *nats.Msg, chunk func([]byte) error, out any) (*Meta, error) {
	meta := MetaOf(m.Header)
	if meta.Status >= 400 {
		var eb wire.ErrorBody
		_ = json.Unmarshal(m.Data, &eb)
		return meta, &Error{RequestID: meta.RequestID, Status: meta.Status, Code: eb.Code, Message: eb.Error, Retryable: eb.Retryable}
	}
	if chunk != nil {
		return meta, chunk(m.Data)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], m.Data...)
		return meta, nil
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return meta, fmt.Errorf("decode answer: %w", err)
	}
	return meta, nil
}

// recovered gives the caller an answer found stored after its reply was
// lost. A streaming caller that already received chunks gets, as the final
// chunk, only the text it has not seen, so its chunks still add up to the
// answer; when the stored answer does not continue them (another run,
// sampled anew, was stored) the call fails retryable, as herd itself ends
// a stream it cannot resume.
func (c *Client) recovered(m *nats.Msg, chunk func([]byte) error, out any, streamed [][]byte) (*Meta, error) {
	meta := MetaOf(m.Header)
	if chunk == nil || len(streamed) == 0 || meta.Status >= 400 {
		return c.final(m, chunk, out)
	}
	b, err := rest(streamed, m.Data)
	if err != nil {
		return meta, &Error{RequestID: meta.RequestID, Status: 503, Code: CodeBackendUnavailable, Retryable: true,
			Message: fmt.Sprintf("the stream broke after %d chunks and the answer herd stored does not continue them (%v); send the request again", len(streamed), err)}
	}
	last := nats.NewMsg(m.Subject)
	last.Header, last.Data = m.Header, b
	return c.final(last, chunk, out)
}

// MetaOf reads herd's reply headers.
func MetaOf(h nats.Header) *Meta {
	atoi := func(k string) int64 { v, _ := strconv.ParseInt(h.Get(k), 10, 64); return v }
	return &Meta{
		RequestID: h.Get(wire.HdrRequestID),
		Status:    int(atoi(wire.HdrStatus)),
		Cache:     h.Get(wire.HdrCache),
		QueueMs:   atoi(wire.HdrQueueMs),
		TotalMs:   atoi(wire.HdrTotalMs),
		BatchSize: int(atoi(wire.HdrBatchSize)),
		Worker:    h.Get(wire.HdrWorker),
		Model:     h.Get(wire.HdrModel),
	}
}
