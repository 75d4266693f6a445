package ollamatest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// Version is the Ollama version the fake reports on GET /api/version.
const Version = "0.6.5"

// maxRecorded is how many request bodies Requests keeps per endpoint.
const maxRecorded = 10_000

// defaultModels are the models a Server knows unless WithModels is given.
var defaultModels = []string{"tiny", "small", "big"}

// Server is a fake Ollama server listening on a loopback port. All methods
// are safe for concurrent use, including while requests are in flight.
type Server struct {
	// URL is the base URL of the server, e.g. "http://127.0.0.1:41234",
	// suitable for OLLAMA_HOST or api.NewClient.
	URL string

	ts        *httptest.Server
	done      chan struct{} // closed by Close; makes parked handlers abort
	closeOnce sync.Once

	// mu guards every field below: the model catalogue, the injected
	// latency and failures, the Block gate, the loaded-model table, the
	// counters and the recorded request bodies.
	mu             sync.Mutex
	models         map[string]string // model key (see modelKey) -> display name
	modelOrder     []string          // model keys in the order they were configured
	latency        time.Duration
	failures       map[string]failure // model key -> injected failure
	failNextN      int
	failNextStatus int
	blockers       int                  // number of unreleased Block calls
	gate           chan struct{}        // non-nil while blockers > 0; closed by the last release
	loaded         map[string]time.Time // model key -> expiry, for /api/ps
	calls          map[string]int
	callsFor       map[callKey]int
	canceled       int
	inFlight       int
	maxInFlight    int
	requests       map[string][]json.RawMessage
}

type failure struct {
	status int
	msg    string
}

type callKey struct{ endpoint, model string }

// Option configures a Server in New.
type Option func(*Server)

// WithModels replaces the set of known models (default "tiny", "small",
// "big"). Calls naming any other model answer 404
// `model "x" not found, try pulling it first`, like Ollama.
func WithModels(names ...string) Option {
	return func(s *Server) { s.setModelsLocked(names) }
}

// WithLatency delays every generate, chat, embed and embeddings call by d
// before it is answered (see SetLatency).
func WithLatency(d time.Duration) Option {
	return func(s *Server) { s.latency = d }
}

// New starts a fake Ollama server and registers t.Cleanup to close it.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		done:     make(chan struct{}),
		failures: make(map[string]failure),
		loaded:   make(map[string]time.Time),
		calls:    make(map[string]int),
		callsFor: make(map[callKey]int),
		requests: make(map[string][]json.RawMessage),
	}
	s.setModelsLocked(defaultModels)
	for _, o := range opts {
		o(s)
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.ts.URL
	t.Cleanup(s.Close)
	return s
}

// Client returns an api.Client for the server that uses http.DefaultClient.
func (s *Server) Client() *api.Client {
	u, err := url.Parse(s.URL)
	if err != nil {
		panic("ollamatest: bad server URL: " + err.Error())
	}
	return api.NewClient(u, http.DefaultClient)
}

// Close shuts the server down: calls parked by Block or latency are aborted
// (their connections are dropped) and later requests are refused, like an
// Ollama process that went away. It is called automatically by t.Cleanup
// and may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.ts.Close()
}

// SetModels replaces the set of known models while the server runs.
func (s *Server) SetModels(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setModelsLocked(names)
}

func (s *Server) setModelsLocked(names []string) {
	s.models = make(map[string]string, len(names))
	s.modelOrder = s.modelOrder[:0]
	for _, n := range names {
		k := modelKey(n)
		if _, dup := s.models[k]; dup {
			continue
		}
		s.models[k] = displayName(n)
		s.modelOrder = append(s.modelOrder, k)
	}
}

// SetLatency sets the delay applied to every later generate, chat, embed and
// embeddings call before it is answered (0 disables it). The wait honours
// the request context: if the client goes away first the call ends early
// and is counted by Canceled. Other endpoints are never delayed.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetFailure makes every later call naming model (generate, chat, embed,
// embeddings, show) answer status with body {"error": msg}, without delay.
// An empty msg gets a default message (for 503 Ollama's "server busy"
// text). Status 0 clears the failure for model.
func (s *Server) SetFailure(model string, status int, msg string) {
	k := modelKey(model)
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		delete(s.failures, k)
		return
	}
	if msg == "" {
		msg = defaultFailureMessage(status)
	}
	s.failures[k] = failure{status: status, msg: msg}
}

// FailNext makes the next n well-formed calls to generate, chat, embed,
// embeddings or show (for any model, known or not) answer status with a
// default {"error": ...} message, without delay; later calls behave
// normally. FailNext takes precedence over SetFailure and replaces any
// earlier FailNext still pending; n <= 0 cancels it.
func (s *Server) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 0 {
		n = 0
	}
	s.failNextN, s.failNextStatus = n, status
}

// Block parks every generate, chat, embed and embeddings call that reaches
// the server until release is called (calls already past the gate are not
// affected). A parked call whose client goes away ends early and is counted
// by Canceled. Blocks nest: calls proceed once every Block has been
// released. release is idempotent.
func (s *Server) Block() (release func()) {
	s.mu.Lock()
	if s.blockers == 0 {
		s.gate = make(chan struct{})
	}
	s.blockers++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.blockers--
			if s.blockers == 0 {
				close(s.gate)
				s.gate = nil
			}
		})
	}
}

// Calls reports how many requests reached endpoint, whatever their outcome.
// Endpoints are named after the path without "/api/": "generate", "chat",
// "embed", "embeddings", "show", "tags", "ps", "version"; "/" is
// "heartbeat". Requests for unknown paths are counted under the same rule.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// CallsFor reports how many well-formed requests to endpoint named model
// (matched like Ollama: case-insensitive, implicit ":latest"), including
// ones answered with an error.
func (s *Server) CallsFor(endpoint, model string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsFor[callKey{endpoint, modelKey(model)}]
}

// Canceled reports how many calls ended because their client went away
// before the answer was complete (while parked by Block, during latency, or
// in the middle of a stream). The server notices a disconnect
// asynchronously, so tests should poll for the expected value.
func (s *Server) Canceled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canceled
}

// InFlight reports how many generate, chat, embed and embeddings calls are
// being processed right now (including ones parked by Block or latency).
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// MaxInFlight reports the highest value InFlight has reached.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// Requests returns copies of the raw bodies received by a POST endpoint, in
// arrival order, keeping only the last 10,000. Bodies are recorded verbatim,
// even when they are not valid JSON.
func (s *Server) Requests(endpoint string) []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.requests[endpoint]
	if len(rs) > maxRecorded {
		rs = rs[len(rs)-maxRecorded:]
	}
	out := make([]json.RawMessage, len(rs))
	for i, r := range rs {
		out[i] = append(json.RawMessage(nil), r...)
	}
	return out
}

func (s *Server) record(endpoint string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := append(s.requests[endpoint], json.RawMessage(body))
	if len(rs) >= 2*maxRecorded { // trim in bulk to keep appends amortised O(1)
		rs = append([]json.RawMessage(nil), rs[len(rs)-maxRecorded:]...)
	}
	s.requests[endpoint] = rs
}

func (s *Server) countCall(endpoint string) {
	s.mu.Lock()
	s.calls[endpoint]++
	s.mu.Unlock()
}

func (s *Server) noteCanceled() {
	s.mu.Lock()
	s.canceled++
	s.mu.Unlock()
}

// enter marks an inference call as in flight; the returned func ends it.
func (s *Server) enter() (exit func()) {
	s.mu.Lock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}
}

// markLoaded records model key as loaded for /api/ps until keepAlive
// expires (nil: Ollama's default of 5 minutes; 0: unload now).
func (s *Server) markLoaded(key string, keepAlive *api.Duration) {
	d := 5 * time.Minute
	if keepAlive != nil {
		d = keepAlive.Duration
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == 0 {
		delete(s.loaded, key)
		return
	}
	exp := time.Now().Add(d)
	if d < 0 || exp.Before(time.Now()) { // negative or overflowing: keep forever
		exp = time.Now().AddDate(100, 0, 0)
	}
	s.loaded[key] = exp
}

// modelKey normalises a model name the way Ollama matches names:
// case-insensitively, with ":latest" as the implicit tag.
func modelKey(name string) string {
	return strings.ToLower(displayName(name))
}

// displayName is name with ":latest" appended when it has no tag, which is
// how Ollama lists models.
func displayName(name string) string {
	if name == "" {
		return ""
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if !strings.Contains(last, ":") {
		return name + ":latest"
	}
	return name
}
