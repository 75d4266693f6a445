package gateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sutazai/herd/internal/wire"
)

// Failure is an error answer to an HTTP caller.
type Failure struct {
	Status  int
	Code    wire.Code
	Message string
}

// retryAfter is the Retry-After of a retryable failure: herd's retryable
// errors (a full queue, an open breaker, Ollama down) pass in seconds.
const retryAfter = "1"

// RetryAfter returns the Retry-After header value for f, or "" when the
// caller should not retry it as it is.
func (f Failure) RetryAfter() string {
	if f.Status == http.StatusTooManyRequests || f.Status == http.StatusServiceUnavailable {
		return retryAfter
	}
	return ""
}

// FailureOf reads herd's error reply: its Herd-Status and its body
// {"error","code","retryable"}. A body that is not one keeps the status
// and gets the code that goes with it.
func FailureOf(status int, body []byte) Failure {
	var eb wire.ErrorBody
	_ = json.Unmarshal(body, &eb)
	f := Failure{Status: status, Code: eb.Code, Message: eb.Error}
	if f.Code == "" {
		f.Code = codeOf(status)
	}
	if f.Message == "" {
		f.Message = http.StatusText(status)
	}
	return f
}

// FailureFromError maps the gateway's own errors to a failure: a
// *wire.Error keeps its code, ErrUnauthorized is 401, ErrForbidden 403,
// anything else 500 internal.
func FailureFromError(err error) Failure {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return Failure{Status: we.Code.Status(), Code: we.Code, Message: we.Message}
	case errors.Is(err, ErrUnauthorized):
		return Failure{Status: http.StatusUnauthorized, Code: "unauthorized", Message: err.Error()}
	case errors.Is(err, ErrForbidden):
		return Failure{Status: http.StatusForbidden, Code: "forbidden", Message: err.Error()}
	}
	return Failure{Status: http.StatusInternalServerError, Code: wire.CodeInternal, Message: err.Error()}
}

func codeOf(status int) wire.Code {
	for _, c := range []wire.Code{wire.CodeInvalidRequest, wire.CodeModelNotFound, wire.CodeQueueFull,
		wire.CodeDeadlineExceeded, wire.CodeCanceled, wire.CodeBackendUnavailable} {
		if c.Status() == status {
			return c
		}
	}
	return wire.CodeInternal
}

// OllamaBody is the body Ollama's API answers an error with: "error" (the
// field Ollama's clients read), plus herd's code and retryable.
func (f Failure) OllamaBody() []byte {
	b, _ := json.Marshal(wire.ErrorBody{Error: f.Message, Code: f.Code, Retryable: f.Code.Retryable()})
	return b
}

// OpenAIError is the OpenAI API's error object.
type OpenAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// OpenAIErrorResponse is the body of an OpenAI API error.
type OpenAIErrorResponse struct {
	Error OpenAIError `json:"error"`
}

// OpenAIType returns the OpenAI error type that goes with the status.
func OpenAIType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	return "api_error"
}

// OpenAIBody is the body the OpenAI API answers an error with; code is
// herd's code (model_not_found is also OpenAI's).
func (f Failure) OpenAIBody() []byte {
	code := string(f.Code)
	b, _ := json.Marshal(OpenAIErrorResponse{Error: OpenAIError{Message: f.Message, Type: OpenAIType(f.Status), Code: &code}})
	return b
}
