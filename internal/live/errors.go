package live

import "errors"

// ErrInvalidConfig is returned when a Config setting cannot work.
var ErrInvalidConfig = errors.New("invalid live config")
