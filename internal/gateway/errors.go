package gateway

import "errors"

var (
	// ErrBadKeys is returned by LoadKeys and ParseKeys when an API key
	// entry cannot be used (an empty key, an invalid agent or priority, a
	// key given twice).
	ErrBadKeys = errors.New("api keys")
	// ErrUnauthorized is returned when keys are configured and a request
	// has no valid Authorization: Bearer key (HTTP 401).
	ErrUnauthorized = errors.New("missing or invalid api key")
	// ErrForbidden is returned when a request names an agent its key does
	// not map to (HTTP 403).
	ErrForbidden = errors.New("api key may not act as that agent")
)
