package pool

import "errors"

var (
	// ErrInvalidConfig is returned by Config.Validate and New for settings
	// that cannot work.
	ErrInvalidConfig = errors.New("pool: invalid configuration")
	// ErrNoCores is returned by New when the host's cores cannot hold one
	// instance of cores_per_instance cores.
	ErrNoCores = errors.New("pool: too few cores for one instance")
)
