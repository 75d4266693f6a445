package managed

import "errors"

var (
	// ErrNoBinary is returned by Start and FindBinary when no Ollama binary
	// can be found. Install it with scripts/tools.sh, or set Config.Binary
	// or HERD_OLLAMA_BIN.
	ErrNoBinary = errors.New("managed: no ollama binary")
	// ErrExited is returned by Start when `ollama serve` exits before it
	// answers. The error carries the tail of its log.
	ErrExited = errors.New("managed: ollama serve exited")
	// ErrNotReady is returned by Start when `ollama serve` does not answer
	// within its start-up timeout. The error carries the tail of its log.
	ErrNotReady = errors.New("managed: ollama serve did not become ready")
	// ErrImport is returned by Start when a test model cannot be imported.
	ErrImport = errors.New("managed: importing model")
	// ErrNotRunning is returned by Kill when no server process is running
	// (it is being restarted, or the instance has stopped).
	ErrNotRunning = errors.New("managed: ollama serve is not running")
	// ErrPinning is returned by Start when the server cannot be pinned to
	// Config.CPUs (unsupported platform, or CPUs this process may not use).
	ErrPinning = errors.New("managed: cannot pin ollama to cpus")
	// ErrPreload is returned by Preload when Ollama answers but did not
	// load the model.
	ErrPreload = errors.New("managed: preload")
)
