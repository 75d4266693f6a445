package auth

import "errors"

var (
	// ErrAgentName is returned when an agent name is not a valid herd
	// token (1-128 characters of A-Z a-z 0-9 _ = -).
	ErrAgentName = errors.New("invalid agent name")
	// ErrTLS is returned when a TLS certificate, key or CA cannot be used.
	ErrTLS = errors.New("tls")
)
