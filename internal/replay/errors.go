package replay

import "errors"

var (
	// ErrNoRecords is returned when a capture, after filtering, holds no
	// record to replay.
	ErrNoRecords = errors.New("no records to replay")
	// ErrBadFilter is returned for a --filter term that is not
	// agent=NAME, priority=high|normal|low or model=NAME.
	ErrBadFilter = errors.New("bad filter")
	// ErrBadSpeed is returned for a speed that is not a positive number
	// or "max".
	ErrBadSpeed = errors.New("bad speed")
	// ErrBadConfig is returned by Config.Validate; the message names the
	// setting.
	ErrBadConfig = errors.New("bad replay configuration")
	// ErrBadReport is returned when a JSON report cannot be read.
	ErrBadReport = errors.New("bad replay report")
)
