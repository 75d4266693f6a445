// Package events defines the metric events every herd service publishes on
// herd.metrics.> (stream HERD_METRICS) for the optimizer and dashboards,
// and a publisher that never makes a request wait for them.
package events

import (
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/wire"
)

// Request is one request's final outcome.
type Request struct {
	At       time.Time `json:"at"`
	ID       string    `json:"id"`
	Model    string    `json:"model"`
	Priority string    `json:"priority"`
	Agent    string    `json:"agent"`
	Op       string    `json:"op,omitempty"`
	// Status is HTTP-style; Code is the error code for a status >= 400.
	Status int    `json:"status"`
	Code   string `json:"code,omitempty"`
	// Cache is hit, miss or coalesced.
	Cache      string `json:"cache,omitempty"`
	QueueMs    int64  `json:"queue_ms"`
	TotalMs    int64  `json:"total_ms"`
	OllamaMs   int64  `json:"ollama_ms,omitempty"`
	PromptTok  int    `json:"prompt_tokens,omitempty"`
	EvalTok    int    `json:"eval_tokens,omitempty"`
	NumCtx     int    `json:"num_ctx,omitempty"`
	Truncated  bool   `json:"truncated,omitempty"`
	BatchSize  int    `json:"batch_size,omitempty"`
	Worker     string `json:"worker,omitempty"`
	Dispatcher bool   `json:"dispatcher,omitempty"` // settled by a dispatcher (error, hit, coalesced)
}

// Call is one Ollama call attempt by a worker, retried or not: what a
// breaker counts.
type Call struct {
	At     time.Time `json:"at"`
	Model  string    `json:"model"`
	Op     string    `json:"op"`
	Worker string    `json:"worker"`
	OK     bool      `json:"ok"`
	// Code is the error code of a failed call.
	Code string `json:"code,omitempty"`
	Ms   int64  `json:"ms"`
	// Request names the work the call ran, the same on every attempt and
	// delivery: the request id, or the first one's for an embed call of
	// several requests. A breaker counts a failure once per Request
	// within its window; an event without one (older workers) counts
	// every time.
	Request string `json:"request,omitempty"`
}

// Batch is one batch a dispatcher published.
type Batch struct {
	At       time.Time `json:"at"`
	Model    string    `json:"model"`
	Priority string    `json:"priority"`
	Size     int       `json:"size"`
	// Fill is Size over the configured batch size.
	Fill float64 `json:"fill"`
}

// Worker is a worker's state at a heartbeat.
type Worker struct {
	At        time.Time `json:"at"`
	ID        string    `json:"id"`
	Slots     int       `json:"slots"`
	Busy      int       `json:"busy"`
	CPUBudget float64   `json:"cpu_budget"`
	Models    []string  `json:"models"`
	// Load is each served model's calls on this worker, for the
	// optimizer's CPU budget.
	Load map[string]ModelLoad `json:"load,omitempty"`
	// MemUsedBytes and MemTotalBytes are the memory of the worker's
	// (and its Ollama's) host; 0 when unknown.
	MemUsedBytes  int64 `json:"mem_used_bytes,omitempty"`
	MemTotalBytes int64 `json:"mem_total_bytes,omitempty"`
	// Loaded are the models its Ollama holds in memory now (ps).
	Loaded []Loaded `json:"loaded,omitempty"`
}

// ModelLoad is one model's calls on a worker at a heartbeat.
type ModelLoad struct {
	// Busy counts its calls running; Waiting those claimed from
	// HERD_BATCH and waiting for a slot; OldestWaitMs how long the oldest
	// of them has waited.
	Busy         int   `json:"busy"`
	Waiting      int   `json:"waiting"`
	OldestWaitMs int64 `json:"oldest_wait_ms,omitempty"`
	// Slots is the model's call limit here (0: none) and NumThread the
	// num_thread of its calls.
	Slots     int `json:"slots,omitempty"`
	NumThread int `json:"num_thread"`
	// LastUsed is when its last call ended here; zero when never.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Loaded is one model in an Ollama's memory.
type Loaded struct {
	Model     string    `json:"model"`
	SizeBytes int64     `json:"size_bytes"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// WorkerSubjects starts the subjects of worker events:
// herd.metrics.worker.<id>.
var WorkerSubjects = wire.MetricsPrefix + ".worker."

// Subjects of the events.
func requestSubject(model string) string {
	return wire.MetricsPrefix + ".req." + wire.EncodeModel(model)
}
func batchSubject(model string) string {
	return wire.MetricsPrefix + ".batch." + wire.EncodeModel(model)
}
func workerSubject(id string) string  { return WorkerSubjects + id }
func callSubject(model string) string { return wire.MetricsPrefix + ".call." + wire.EncodeModel(model) }

// Publisher publishes events asynchronously and drops (and counts) an
// event rather than wait. It is safe for concurrent use; a nil Publisher
// publishes nothing.
type Publisher struct {
	js         jetstream.JetStream
	maxPending int
	sent       atomic.Int64
	dropped    atomic.Int64
}

// NewPublisher returns a publisher on nc with its own JetStream context,
// keeping at most maxPending events in flight (default 2048 when 0).
func NewPublisher(nc *nats.Conn, maxPending int) (*Publisher, error) {
	if maxPending <= 0 {
		maxPending = 2048
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2*maxPending))
	if err != nil {
		return nil, err
	}
	return &Publisher{js: js, maxPending: maxPending}, nil
}

// Request publishes a request event. It never blocks.
func (p *Publisher) Request(e *Request) { p.publish(requestSubject(e.Model), e) }

// Call publishes a call event. It never blocks.
func (p *Publisher) Call(e *Call) { p.publish(callSubject(e.Model), e) }

// Batch publishes a batch event. It never blocks.
func (p *Publisher) Batch(e *Batch) { p.publish(batchSubject(e.Model), e) }

// Worker publishes a worker event. It never blocks.
func (p *Publisher) Worker(e *Worker) { p.publish(workerSubject(e.ID), e) }

// Sent and Dropped count events handed to JetStream and dropped.
func (p *Publisher) Sent() int64 { return p.sent.Load() }

// Dropped counts events dropped because too many were in flight.
func (p *Publisher) Dropped() int64 { return p.dropped.Load() }

func (p *Publisher) publish(subject string, v any) {
	if p == nil {
		return
	}
	if p.js.PublishAsyncPending() >= p.maxPending {
		p.dropped.Add(1)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		p.dropped.Add(1)
		return
	}
	m := nats.NewMsg(subject)
	m.Data = b
	if _, err := p.js.PublishMsgAsync(m); err != nil {
		p.dropped.Add(1)
		return
	}
	p.sent.Add(1)
}
