package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/wire"
)

// Config says where Ollama is.
type Config struct {
	// URL of the Ollama server, e.g. http://127.0.0.1:11434. Empty means
	// OLLAMA_HOST, or a managed Ollama where the binary supports it.
	URL string `koanf:"url"`
	// Timeout bounds one call. Default 10m.
	Timeout time.Duration `koanf:"timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Timeout: 10 * time.Minute} }

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.URL != "" {
		if _, err := ParseURL(c.URL); err != nil {
			return err
		}
	}
	if c.Timeout <= 0 {
		return errors.New("ollama: timeout must be positive")
	}
	return nil
}

// ParseURL accepts a URL or host:port as OLLAMA_HOST does.
func ParseURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("ollama: url %q is not a URL such as http://127.0.0.1:11434", s)
	}
	return u, nil
}

// ErrIncomplete is returned when a generation ended without its final
// (done) chunk: Ollama went away mid-answer. It is retryable.
var ErrIncomplete = errors.New("ollama: answer ended before it was done")

// StatusError is an error answer from Ollama with its HTTP status.
type StatusError struct {
	StatusCode int
	Message    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("ollama: %d %s", e.StatusCode, e.Message)
}

type transport struct{ base http.RoundTripper }

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return nil, &StatusError{StatusCode: resp.StatusCode, Message: msg}
}

// NewClient returns an api.Client for base whose errors keep their status.
func NewClient(base string, timeout time.Duration) (*api.Client, error) {
	u, err := ParseURL(base)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return api.NewClient(u, &http.Client{Transport: transport{tr}, Timeout: timeout}), nil
}

// Classify maps an error from an Ollama call to herd's error code and
// whether the call may succeed if retried (backend_unavailable).
func Classify(err error) (wire.Code, bool) {
	var se *StatusError
	switch {
	case err == nil:
		return "", false
	case errors.Is(err, context.Canceled):
		return wire.CodeCanceled, false
	case errors.Is(err, context.DeadlineExceeded):
		return wire.CodeDeadlineExceeded, false
	case errors.As(err, &se):
		switch {
		case se.StatusCode == http.StatusNotFound:
			return wire.CodeModelNotFound, false
		case se.StatusCode == http.StatusTooManyRequests || se.StatusCode >= 500:
			return wire.CodeBackendUnavailable, true
		default:
			return wire.CodeInvalidRequest, false
		}
	}
	var ne net.Error
	var oe *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &oe) || errors.As(err, &ne) {
		return wire.CodeBackendUnavailable, true
	}
	// An error sent inside a stream that had started.
	msg := err.Error()
	if strings.Contains(msg, "not found") {
		return wire.CodeModelNotFound, false
	}
	return wire.CodeBackendUnavailable, true
}
