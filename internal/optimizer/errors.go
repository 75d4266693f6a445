package optimizer

import "errors"

var (
	// ErrInvalidConfig is returned by Config.Validate and New when a setting
	// cannot work; the message names it.
	ErrInvalidConfig = errors.New("optimizer: invalid config")
	// ErrBadEvent is returned when a metric event cannot be decoded; the
	// message is dropped (terminated), since redelivery cannot fix it.
	ErrBadEvent = errors.New("optimizer: bad event")
)
