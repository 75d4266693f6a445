package wire

import (
	"fmt"
	"regexp"
	"strings"
)

// Subject prefixes and patterns (see docs/protocol.md).
const (
	// ReqPrefix starts a durable request subject: herd.req.<priority>.<agent>.
	ReqPrefix = "herd.req"
	// AskPrefix starts the plain request/reply door: herd.ask.<priority>.<agent>.
	AskPrefix = "herd.ask"
	// CancelPrefix starts a cancel subject: herd.cancel.<agent>.<request-id>.
	// A cancel takes effect only for a request of that agent.
	CancelPrefix = "herd.cancel"
	// BatchPrefix starts a batch subject: herd.batch.<model>.<priority>.
	BatchPrefix = "herd.batch"
	// WakePrefix starts the core-NATS hint a dispatcher sends after it
	// published a batch: herd.wake.<model>. Internal; losing one only
	// delays a worker until its next poll.
	WakePrefix = "herd.wake"
	// DonePrefix starts the core-NATS announcement of a finished leader
	// request, herd.done.<cache-key>, that answers coalesced followers.
	DonePrefix = "herd.done"
	// MetricsPrefix starts metric event subjects (stream HERD_METRICS).
	MetricsPrefix = "herd.metrics"
	// EventsPrefix starts decision and state-change subjects.
	EventsPrefix = "herd.events"
	// DLQPrefix starts dead-letter subjects: herd.dlq.<priority>.<agent>.
	DLQPrefix = "herd.dlq"
	// CapturePrefix starts captured-request subjects (stream HERD_CAPTURE):
	// herd.capture.<priority>.<agent>.
	CapturePrefix = "herd.capture"
	// BenchPrefix starts model-benchmark result subjects (stream
	// HERD_BENCH): herd.bench.<model>.<profile>.
	BenchPrefix = "herd.bench"
	// StatusPrefix starts the status endpoint of each herd process's NATS
	// micro service (internal/discovery): herd.status.<service>, for
	// example herd.status.worker; one of the service's processes answers.
	StatusPrefix = "herd.status"
	// ModelsSubject is the dispatchers' request/reply list of the models
	// live workers serve ({"models": {<model>: <digest>}}; one dispatcher
	// answers): how the HTTP gateway answers /api/tags and /v1/models
	// without reading herd_control.
	ModelsSubject = "herd.models"
)

// Stream, consumer and bucket names.
const (
	StreamReq     = "HERD_REQ"
	StreamBatch   = "HERD_BATCH"
	StreamMetrics = "HERD_METRICS"
	StreamDLQ     = "HERD_DLQ"
	StreamCapture = "HERD_CAPTURE"
	StreamBench   = "HERD_BENCH"
	// StreamAdvisories keeps JetStream's max-deliveries advisories of
	// HERD_REQ and HERD_BATCH until a dispatcher has settled them.
	StreamAdvisories = "HERD_ADVISORIES"
	// AdvisoriesConsumer is the dispatchers' durable consumer on it.
	AdvisoriesConsumer = "advisories"

	BucketCache    = "herd_cache"
	BucketResults  = "herd_results"
	BucketControl  = "herd_control"
	BucketInflight = "herd_inflight"
)

// Request and reply headers.
const (
	HdrMsgID    = "Nats-Msg-Id"
	HdrReplyTo  = "Herd-Reply-To"
	HdrTimeout  = "Herd-Timeout"
	HdrDeadline = "Herd-Deadline"
	HdrCache    = "Herd-Cache"
	HdrCacheTTL = "Herd-Cache-TTL"

	HdrStatus    = "Herd-Status"
	HdrRequestID = "Herd-Request-Id"
	HdrQueueMs   = "Herd-Queue-Ms"
	HdrTotalMs   = "Herd-Total-Ms"
	HdrBatchSize = "Herd-Batch-Size"
	HdrWorker    = "Herd-Worker"
	HdrSeq       = "Herd-Seq"
	// HdrPriority and HdrAgent are set by the ask door on the stored
	// request so that it keeps the caller's priority and agent.
	HdrPriority = "Herd-Priority"
	HdrAgent    = "Herd-Agent"
	// HdrReason carries the reason on a dead letter.
	HdrReason = "Herd-Reason"
)

// Values of the Herd-Cache header.
const (
	CacheAuto    = "auto"
	CacheOff     = "off"
	CacheRefresh = "refresh"

	CacheHit       = "hit"
	CacheMiss      = "miss"
	CacheCoalesced = "coalesced"
)

// Priority is a request's priority class.
type Priority string

// The three priorities, highest first.
const (
	High   Priority = "high"
	Normal Priority = "normal"
	Low    Priority = "low"
)

// Priorities lists the priorities from highest to lowest.
var Priorities = []Priority{High, Normal, Low}

// Index returns 0 for high, 1 for normal, 2 for low and -1 otherwise.
func (p Priority) Index() int {
	switch p {
	case High:
		return 0
	case Normal:
		return 1
	case Low:
		return 2
	}
	return -1
}

// Valid reports whether p is one of the three priorities.
func (p Priority) Valid() bool { return p.Index() >= 0 }

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,128}$`)

// ValidToken reports whether s can be an agent name or a request id: 1 to 128
// characters of A-Z, a-z, 0-9, '_', '=' or '-'. Such a token is safe in a
// subject, a KV key and a consumer name.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// ReqSubject returns herd.req.<p>.<agent>.
func ReqSubject(p Priority, agent string) string { return ReqPrefix + "." + string(p) + "." + agent }

// AskSubject returns herd.ask.<p>.<agent>.
func AskSubject(p Priority, agent string) string { return AskPrefix + "." + string(p) + "." + agent }

// CancelSubject returns herd.cancel.<agent>.<id>: agent cancels its own
// request id.
func CancelSubject(agent, id string) string { return CancelPrefix + "." + agent + "." + id }

// ParseCancel splits herd.cancel.<agent>.<id> into agent and id; ok is
// false when the subject is not one.
func ParseCancel(subject string) (agent, id string, ok bool) {
	rest, found := strings.CutPrefix(subject, CancelPrefix+".")
	if !found {
		return "", "", false
	}
	agent, id, found = strings.Cut(rest, ".")
	if !found || !ValidToken(agent) || !ValidToken(id) {
		return "", "", false
	}
	return agent, id, true
}

// BatchSubject returns herd.batch.<encoded model>.<p>.
func BatchSubject(model string, p Priority) string {
	return BatchPrefix + "." + EncodeModel(model) + "." + string(p)
}

// WakeSubject returns herd.wake.<encoded model>.
func WakeSubject(model string) string { return WakePrefix + "." + EncodeModel(model) }

// DoneSubject returns herd.done.<key>.
func DoneSubject(key string) string { return DonePrefix + "." + key }

// DLQSubject returns herd.dlq.<p>.<agent>.
func DLQSubject(p Priority, agent string) string { return DLQPrefix + "." + string(p) + "." + agent }

// AskedSuffix ends the subject on which the ask door stores a request in
// HERD_REQ: herd.req.<p>.<agent>.ask. Agents may not publish there (their
// permission is herd.req.*.<agent>), so a request stored there came
// through the ask door and its reply subject is the NATS reply of the ask
// (which the server maps under access control, _R_.…).
const AskedSuffix = "ask"

// AskedSubject returns herd.req.<p>.<agent>.ask.
func AskedSubject(p Priority, agent string) string { return ReqSubject(p, agent) + "." + AskedSuffix }

// ParseDoor splits herd.req.<p>.<agent> or herd.ask.<p>.<agent> into its
// priority and agent. It returns an error naming what is wrong.
func ParseDoor(subject string) (Priority, string, error) {
	p, agent, _, err := ParseStored(subject)
	return p, agent, err
}

// ParseStored is ParseDoor that also accepts herd.req.<p>.<agent>.ask and
// reports whether the subject is that one (a request the ask door stored).
func ParseStored(subject string) (p Priority, agent string, asked bool, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) == 5 && parts[1] == "req" && parts[4] == AskedSuffix {
		parts, asked = parts[:4], true
	}
	p, agent, err = parseDoor(parts, subject)
	return p, agent, asked, err
}

func parseDoor(parts []string, subject string) (Priority, string, error) {
	if len(parts) != 4 || parts[0] != "herd" || (parts[1] != "req" && parts[1] != "ask") {
		return "", "", fmt.Errorf("subject %q is not herd.req.<priority>.<agent> or herd.ask.<priority>.<agent>", subject)
	}
	p := Priority(parts[2])
	if !p.Valid() {
		return "", "", fmt.Errorf("priority %q is not high, normal or low", parts[2])
	}
	if !ValidToken(parts[3]) {
		return "", "", fmt.Errorf("agent %q must be 1-128 characters of A-Z a-z 0-9 _ = -", parts[3])
	}
	return p, parts[3], nil
}

// ConsumerName returns a durable consumer name for the model and priority,
// e.g. "batch_llama3%2E2:3b_high" becomes "batch_llama3_2_3b_<hash>_high".
// Consumer names may not hold '.', '*', '>', '/', '\' or spaces, so the
// readable part is sanitised and a hash keeps distinct models apart.
func ConsumerName(model string, p Priority) string {
	var b strings.Builder
	for _, r := range model {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 48 {
		s = s[:48]
	}
	return fmt.Sprintf("batch_%s_%08x_%s", s, fnv32(model), p)
}

// ReqConsumerName returns the durable consumer name for requests of p.
func ReqConsumerName(p Priority) string { return "req_" + string(p) }

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
