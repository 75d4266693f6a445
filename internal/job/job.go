// Package job defines what a dispatcher hands to a worker: a batch of
// requests of one model and priority, as stored in HERD_BATCH.
package job

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// Item is one request in a batch.
type Item struct {
	// ID is the request id (Nats-Msg-Id).
	ID string `json:"id"`
	// Reply is the subject the answer goes to.
	Reply    string        `json:"reply"`
	Agent    string        `json:"agent"`
	Priority wire.Priority `json:"priority"`
	Op       request.Op    `json:"op"`
	Model    string        `json:"model"`
	Stream   bool          `json:"stream,omitempty"`
	// Body is the request body as the agent sent it.
	Body json.RawMessage `json:"body"`
	// Key is the cache key; empty when the request is neither cached nor
	// coalesced.
	Key string `json:"key,omitempty"`
	// Cacheable says the answer goes to herd_cache for CacheTTL.
	Cacheable bool          `json:"cacheable,omitempty"`
	CacheTTL  time.Duration `json:"cache_ttl,omitempty"`
	// CacheAsked says the request asked to be cached (Herd-Cache-TTL): its
	// answer is cached even when its prompt filled the window.
	CacheAsked bool `json:"cache_asked,omitempty"`
	// Leader says other requests wait for this one's answer: the worker
	// announces it on herd.done.<Key> and releases the in-flight claim.
	Leader bool `json:"leader,omitempty"`
	// ClaimRevision is the herd_inflight revision of the leader's claim,
	// so the worker releases exactly that claim.
	ClaimRevision uint64 `json:"claim_rev,omitempty"`
	// Redelivered says JetStream delivered the request more than once: the
	// worker checks herd_results before running it.
	Redelivered bool `json:"redelivered,omitempty"`
	// Asked says the ask door stored the request: Reply is the ask's own
	// NATS reply (mapped across accounts under access control).
	Asked bool `json:"asked,omitempty"`
	// Received is when JetStream stored the request.
	Received time.Time `json:"received"`
	// Seq is the request's sequence in HERD_REQ (0 for one the ask door
	// answered itself): a delivery of the message an outcome was settled
	// for is a redelivery, however JetStream counts it.
	Seq uint64 `json:"seq,omitempty"`
	// Pulled is when a dispatcher took it from HERD_REQ (for the stage
	// latencies, herd_worker_stage_seconds).
	Pulled time.Time `json:"pulled,omitzero"`
	// Deadline is when the request is answered 504 instead of run; zero
	// when none.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Batch is a batch of items of one model and priority.
type Batch struct {
	ID       string        `json:"id"`
	Model    string        `json:"model"`
	Priority wire.Priority `json:"priority"`
	Created  time.Time     `json:"created"`
	Items    []Item        `json:"items"`
}

// DeadLetter returns the HERD_DLQ message for it: the request body as the
// agent sent it, its id, its reply subject and why it could not be served.
func (it Item) DeadLetter(reason string) *nats.Msg {
	m := nats.NewMsg(wire.DLQSubject(it.Priority, it.Agent))
	m.Data = it.Body
	m.Header.Set(wire.HdrRequestID, it.ID)
	// One dead letter per request, however often it is written (a crash
	// between the dead letter and the acknowledgement repeats it).
	m.Header.Set(wire.HdrMsgID, it.ID)
	m.Header.Set(wire.HdrReason, reason)
	if it.Reply != "" {
		m.Header.Set(wire.HdrReplyTo, it.Reply)
	}
	return m
}
