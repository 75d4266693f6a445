package reqmetrics

import (
	"strings"

	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/wire"
)

// OutcomeLabel names what became of a request (or of an Ollama call) on
// every herd metric that counts them: herd_requests_total,
// herd_dispatcher_requests_total, herd_worker_requests_total,
// herd_worker_ollama_calls_total and herd_gateway_requests_total. Its
// values are OutcomeOK for an answer and otherwise the error reply's code
// (wire.Code: queue_full, breaker_open, ...), the same string on every
// metric, so a dashboard groups and filters them alike. The dispatcher's
// counter, which also says how a request left the dispatcher, adds its own
// values for requests it answered or handed on without an error: hit,
// coalesced, batched, resent, already_answered.
const OutcomeLabel = "outcome"

// OutcomeOK is the outcome of an answer.
const OutcomeOK = "ok"

// Outcome returns the outcome label value for an error code, OutcomeOK for
// none.
func Outcome(code wire.Code) string {
	if code == "" {
		return OutcomeOK
	}
	return string(code)
}

// ErrorOutcomes returns, as a PromQL regular expression, the outcomes
// that count against a priority's error-rate target (slo.IsError: a 5xx or
// 429 reply): "queue_full|deadline_exceeded|...".
func ErrorOutcomes() string {
	var codes []string
	for _, c := range wire.Codes {
		if slo.IsError(c.Status()) {
			codes = append(codes, string(c))
		}
	}
	return strings.Join(codes, "|")
}
