package policy

import "errors"

var (
	// ErrNoProfile is returned by SelectModel when no profile matches the
	// agent and the configured default profile does not exist (Validate
	// rejects such a configuration).
	ErrNoProfile = errors.New("policy: no agent profile matches")
)
