package config

import (
	"errors"
	"fmt"
)

var (
	// ErrFileNotFound is returned by Load when the configuration file it was
	// explicitly given does not exist.
	ErrFileNotFound = errors.New("config: file not found")
	// ErrUnknownKey is returned by Load, inside a *KeyError, when a file,
	// environment variable or flag names a setting that does not exist,
	// usually a typo; config/herd.yaml lists every setting.
	ErrUnknownKey = errors.New("unknown setting")
)

// KeyError is a problem with one or more settings: which keys, where their
// values came from, and what is wrong. Load returns these (joined with
// errors.Join when there are several); find them with errors.As.
type KeyError struct {
	// Key is the koanf path of the setting, such as "dispatcher.batch_size"
	// or "models[1].num_ctx"; several keys are separated by ", ".
	Key string
	// Source is where the value came from: "defaults", "file PATH",
	// "env HERD_...", "env OLLAMA_HOST" or "flag KEY"; empty when unknown.
	Source string
	// Err is what is wrong; ErrUnknownKey for a setting that does not exist.
	Err error
}

func (e *KeyError) Error() string {
	if e.Source == "" {
		return fmt.Sprintf("config: %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("config: %s (from %s): %v", e.Key, e.Source, e.Err)
}

func (e *KeyError) Unwrap() error { return e.Err }
