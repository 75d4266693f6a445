package wire

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Code is the machine-readable code of an error reply.
type Code string

// Error codes, as in DESIGN.md.
const (
	CodeInvalidRequest     Code = "invalid_request"
	CodeModelNotFound      Code = "model_not_found"
	CodeQueueFull          Code = "queue_full"
	CodeDeadlineExceeded   Code = "deadline_exceeded"
	CodeCanceled           Code = "canceled"
	CodeBreakerOpen        Code = "breaker_open"
	CodeBackendUnavailable Code = "backend_unavailable"
	CodeInternal           Code = "internal"
)

// Codes lists every error code, in the order above.
var Codes = []Code{CodeInvalidRequest, CodeModelNotFound, CodeQueueFull, CodeDeadlineExceeded,
	CodeCanceled, CodeBreakerOpen, CodeBackendUnavailable, CodeInternal}

// Status returns the HTTP-style status that goes with the code.
func (c Code) Status() int {
	switch c {
	case CodeInvalidRequest:
		return http.StatusBadRequest
	case CodeModelNotFound:
		return http.StatusNotFound
	case CodeQueueFull:
		return http.StatusTooManyRequests
	case CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case CodeCanceled:
		return 499
	case CodeBreakerOpen, CodeBackendUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Retryable reports whether the same request may succeed later.
func (c Code) Retryable() bool {
	switch c {
	case CodeQueueFull, CodeBreakerOpen, CodeBackendUnavailable, CodeInternal:
		return true
	}
	return false
}

// ErrorBody is the body of an error reply.
type ErrorBody struct {
	Error     string `json:"error"`
	Code      Code   `json:"code"`
	Retryable bool   `json:"retryable"`
}

// Error is a herd error with its code: what an error reply carries.
type Error struct {
	Code    Code
	Message string
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Body returns the JSON error body.
func (e *Error) Body() []byte {
	b, _ := json.Marshal(ErrorBody{Error: e.Message, Code: e.Code, Retryable: e.Code.Retryable()})
	return b
}

// QueueFull reports whether err is JetStream refusing a publish because a
// bounded stream is full (herd answers that 429 queue_full).
func QueueFull(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "maximum messages exceeded") || strings.Contains(s, "maximum bytes exceeded") ||
		strings.Contains(s, "maximum messages per subject exceeded")
}
