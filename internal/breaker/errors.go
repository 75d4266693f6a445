package breaker

import "errors"

var (
	// ErrOpen is returned by Decision.Err when a model's breaker rejects
	// a request: answer it 503 breaker_open, retryable, or try later.
	ErrOpen = errors.New("breaker: open")
	// ErrInvalidConfig is returned by Config.Validate, Fallback.Validate
	// and NewSet when a setting cannot work; the message names it.
	ErrInvalidConfig = errors.New("breaker: invalid config")
)
