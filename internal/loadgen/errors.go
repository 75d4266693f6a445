package loadgen

import "errors"

var (
	// ErrProfile is returned when a fleet or one of its profiles cannot be
	// used; the message names the profile and the field to fix.
	ErrProfile = errors.New("bad loadgen profile")
	// ErrOptions is returned when generator options cannot be used.
	ErrOptions = errors.New("bad loadgen options")
)
