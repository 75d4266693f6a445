package health

import (
	"time"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/registry"
)

// Snapshot is what Gatherer read from a deployment at one moment. Fields
// that could not be read carry the error as text, so a Snapshot is always
// complete enough to evaluate and to print as JSON.
type Snapshot struct {
	// At is when the snapshot was taken.
	At time.Time `json:"at"`
	// URL is the NATS server that was asked.
	URL string `json:"url"`
	// ConnectError is why NATS could not be reached; empty when it was.
	ConnectError string `json:"connect_error,omitempty"`
	// JetStreamError is why JetStream could not be used (not enabled, no
	// answer); empty when it answered.
	JetStreamError string `json:"jetstream_error,omitempty"`
	// Streams are herd's expected streams, in definition order.
	Streams []Stream `json:"streams,omitempty"`
	// Buckets are herd's expected KV buckets, in definition order.
	Buckets []Bucket `json:"buckets,omitempty"`
	// Consumers are the expected request consumers, then every batch
	// consumer found on HERD_BATCH.
	Consumers []Consumer `json:"consumers,omitempty"`
	// Workers are every registration in herd_control, live or stale.
	Workers []registry.Registration `json:"workers,omitempty"`
	// Breakers are every breaker decision in herd_control.
	Breakers []control.Breaker `json:"breakers,omitempty"`
	// ControlError is why herd_control could not be read.
	ControlError string `json:"control_error,omitempty"`
	// Capture is herd_control's capture.enabled ("on" or "off"), or empty
	// when it was never switched at run time.
	Capture string `json:"capture,omitempty"`
	// Ollama are the probed Ollama endpoints.
	Ollama []Ollama `json:"ollama,omitempty"`
	// Levels are each priority's outcomes over LevelsWindow against the
	// service-level targets in force; LevelsError says why they could not
	// be read.
	Levels       []ServiceLevel `json:"levels,omitempty"`
	LevelsWindow time.Duration  `json:"levels_window_ns,omitempty"`
	LevelsError  string         `json:"levels_error,omitempty"`
}

// Stream is the state of one stream.
type Stream struct {
	Name string `json:"name"`
	// Missing is true when the stream does not exist.
	Missing bool `json:"missing,omitempty"`
	// Error is why its state could not be read (other than missing).
	Error string `json:"error,omitempty"`
	Msgs  uint64 `json:"msgs"`
	Bytes uint64 `json:"bytes"`
	// LastTime is when the newest message was stored (zero when empty).
	LastTime time.Time `json:"last_time,omitzero"`
}

// Bucket is the state of one KV bucket.
type Bucket struct {
	Name    string `json:"name"`
	Missing bool   `json:"missing,omitempty"`
	Error   string `json:"error,omitempty"`
	// Values counts the entries stored, history included.
	Values uint64 `json:"values"`
	Bytes  uint64 `json:"bytes"`
}

// Consumer is the state of one durable consumer.
type Consumer struct {
	Stream string `json:"stream"`
	Name   string `json:"name"`
	// Model is the batch consumer's model (empty for request consumers).
	Model    string `json:"model,omitempty"`
	Priority string `json:"priority,omitempty"`
	Missing  bool   `json:"missing,omitempty"`
	Error    string `json:"error,omitempty"`
	// Pending is the consumer's lag: messages not yet delivered.
	Pending uint64 `json:"pending"`
	// AckPending counts messages delivered and not yet acknowledged;
	// MaxAckPending is the consumer's limit on them (0 without one).
	AckPending    int `json:"ack_pending"`
	MaxAckPending int `json:"max_ack_pending"`
	// Redelivered counts unacknowledged messages delivered more than once.
	Redelivered int `json:"redelivered"`
	// Oldest is when the oldest unacknowledged message was stored; zero
	// when nothing waits or it could not be found.
	Oldest time.Time `json:"oldest,omitzero"`
}

// Ollama is what one Ollama endpoint answered.
type Ollama struct {
	URL     string   `json:"url"`
	Version string   `json:"version,omitempty"`
	Models  []string `json:"models,omitempty"`
	Error   string   `json:"error,omitempty"`
}
