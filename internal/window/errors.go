package window

import "errors"

// ErrInvalidConfig is returned by Config.Validate and New when a setting
// cannot work; the message names the setting.
var ErrInvalidConfig = errors.New("window: invalid config")
