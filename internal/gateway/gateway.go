package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/wire"
)

// modelsFresh is how long a list of served models from the dispatchers
// (herd.models) answers /api/tags and /v1/models before it is asked
// again; modelsWait how long the gateway waits for that list.
const (
	modelsFresh = time.Second
	modelsWait  = 2 * time.Second
)

// maxBody bounds a request body; herd refuses a larger one anyway
// (dispatcher.max_body_bytes, 512 KiB by default), and an OpenAI body with
// images is larger than herd's own.
const maxBody = 16 << 20

// Gateway serves the HTTP doors. Create it with New, serve Handler, and
// run Run for the list of served models.
type Gateway struct {
	cfg  Config
	nc   *nats.Conn
	keys Keys
	log  *zap.Logger
	m    *metrics
	reg  prometheus.Registerer
	now  func() time.Time

	// mu guards listed and listedAt.
	mu       sync.Mutex
	listed   map[string]string
	listedAt time.Time
}

// New returns a gateway that asks herd on nc. reg (may be nil) gets its
// metrics. The caller keeps ownership of nc.
func New(cfg Config, nc *nats.Conn, keys Keys, log *zap.Logger, reg prometheus.Registerer) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return &Gateway{cfg: cfg, nc: nc, keys: keys, log: log.Named("gateway"), m: newMetrics(reg), reg: reg,
		now: time.Now}, nil
}

// Run serves the doors on cfg.Listen (see Serve); with no Listen it
// returns at once. A listen address that cannot be bound is an error at
// once.
func (g *Gateway) Run(ctx context.Context) error {
	if g.cfg.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	return g.Serve(ctx, ln)
}

// Serve serves the doors on ln until ctx ends; then it stops the server,
// letting running calls end for up to 10s, and returns nil. It closes ln.
// While it serves, `nats micro ls` lists it (herd-gateway,
// internal/discovery); a registration the server refuses is an error at
// once.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	if err := discovery.Register(ctx, g.nc, discovery.Gateway.With("listen", ln.Addr().String()), g.reg); err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g.log.Info("http doors listening", zap.String("addr", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("api serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// models returns the models live workers serve, with their digests, as
// the dispatchers list them on wire.ModelsSubject, asked at most once per
// modelsFresh; none when no dispatcher answers within modelsWait. The
// gateway does not read herd_control itself: under access control it is
// a user of the agents' account, with no JetStream access
// (docs/protocol.md, "Permissions").
func (g *Gateway) models() map[string]string {
	g.mu.Lock()
	if !g.listedAt.IsZero() && g.now().Sub(g.listedAt) < modelsFresh {
		defer g.mu.Unlock()
		return g.listed
	}
	g.mu.Unlock()
	var list struct {
		Models map[string]string `json:"models"`
	}
	m, err := g.nc.Request(wire.ModelsSubject, nil, modelsWait)
	if err != nil {
		g.log.Debug("list models", zap.Error(err))
		return nil
	}
	if err := json.Unmarshal(m.Data, &list); err != nil {
		g.log.Warn("list models", zap.Error(err))
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listed, g.listedAt = list.Models, g.now()
	return list.Models
}

// Handler returns the HTTP handler of both doors.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	running := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Ollama is running"))
	}
	mux.HandleFunc("GET /{$}", running)
	mux.HandleFunc("HEAD /{$}", running)
	mux.HandleFunc("GET /api/version", g.ollamaVersion)
	mux.HandleFunc("GET /api/tags", g.ollamaTags)
	mux.HandleFunc("GET /api/ps", g.ollamaPs)
	mux.HandleFunc("POST /api/show", g.ollamaShow)
	mux.HandleFunc("POST /api/generate", g.ollamaGenerate)
	mux.HandleFunc("POST /api/chat", g.ollamaChat)
	mux.HandleFunc("POST /api/embed", g.ollamaEmbed)
	mux.HandleFunc("POST /api/embeddings", g.ollamaEmbeddings)
	mux.HandleFunc("GET /v1/models", g.openaiModels)
	mux.HandleFunc("GET /v1/models/{id...}", g.openaiModel)
	mux.HandleFunc("POST /v1/chat/completions", g.openaiChat)
	mux.HandleFunc("POST /v1/completions", g.openaiCompletions)
	mux.HandleFunc("POST /v1/embeddings", g.openaiEmbeddings)
	return mux
}

// framing is how one door writes one call's answer.
type framing struct {
	door, endpoint string
	stream         bool
	// contentType of a successful answer.
	contentType string
	// chunk returns the bytes to write for a streamed chunk's body;
	// final those for the final answer's.
	chunk, final func([]byte) ([]byte, error)
	// fail returns the body of an error answer; inStream that of a
	// failure after the stream started.
	fail, inStream func(Failure) []byte
}

func ollamaFail(f Failure) []byte     { return f.OllamaBody() }
func ollamaInStream(f Failure) []byte { return append(f.OllamaBody(), '\n') }
func openaiFail(f Failure) []byte     { return append(f.OpenAIBody(), '\n') }

// writeFailure writes f as a whole answer.
func (g *Gateway) writeFailure(w http.ResponseWriter, door, endpoint string, fail func(Failure) []byte, f Failure, start time.Time) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if ra := f.RetryAfter(); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	if f.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herd"`)
	}
	w.WriteHeader(f.Status)
	_, _ = w.Write(fail(f))
	g.m.observe(door, endpoint, f.Code, start)
}

// caller resolves r's caller, or writes the failure and returns false.
func (g *Gateway) caller(w http.ResponseWriter, r *http.Request, door, endpoint string, fail func(Failure) []byte, start time.Time) (Caller, bool) {
	c, err := ResolveCaller(r.Header, g.keys, Defaults{Agent: g.cfg.Agent, Priority: wire.Priority(g.cfg.Priority)}, nuid.Next)
	if err != nil {
		g.writeFailure(w, door, endpoint, fail, FailureFromError(err), start)
		return Caller{}, false
	}
	return c, true
}

// decode reads r's JSON body into v, or writes a 400 and returns false.
func (g *Gateway) decode(w http.ResponseWriter, r *http.Request, v any, door, endpoint string, fail func(Failure) []byte, start time.Time) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v); err != nil {
		g.writeFailure(w, door, endpoint, fail, Failure{Status: http.StatusBadRequest, Code: wire.CodeInvalidRequest, Message: "invalid JSON body: " + err.Error()}, start)
		return false
	}
	return true
}

// call asks herd for c with body and writes the answer as fr says.
func (g *Gateway) call(w http.ResponseWriter, r *http.Request, c Caller, fr framing, body []byte, start time.Time) {
	h := w.Header()
	h.Set(HdrRequestID, c.ID)
	h.Set(HdrAgent, c.Agent)
	h.Set(HdrPriority, string(c.Priority))
	if fr.stream {
		h.Set("Trailer", HdrCache+", "+HdrQueueMs+", "+HdrModel)
	}
	ctx := r.Context()
	if g.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.cfg.Timeout)
		defer cancel()
	}
	rc := http.NewResponseController(w)
	started := false
	begin := func() {
		if !started {
			h.Set("Content-Type", fr.contentType)
			w.WriteHeader(http.StatusOK)
			started = true
		}
	}
	a, err := g.ask(ctx, c, body, func(data []byte) error {
		out, err := fr.chunk(data)
		if err != nil {
			return err
		}
		begin()
		if _, err := w.Write(out); err != nil {
			return err
		}
		return rc.Flush()
	})
	var f Failure
	switch {
	case err != nil && r.Context().Err() != nil:
		g.m.observe(fr.door, fr.endpoint, wire.CodeCanceled, start) // the caller left
		return
	case err != nil && ctx.Err() != nil:
		f = Failure{Status: http.StatusGatewayTimeout, Code: wire.CodeDeadlineExceeded, Message: fmt.Sprintf("no answer within api.timeout (%v)", g.cfg.Timeout)}
	case err != nil:
		f = FailureFromError(err)
		if !errors.Is(err, errNoDispatcher) {
			g.log.Warn("ask", zap.String("request_id", c.ID), zap.Error(err))
		}
	case a.status >= 400:
		f = FailureOf(a.status, a.msg.Data)
	default:
		out, err := fr.final(a.msg.Data)
		if err != nil {
			f = FailureFromError(fmt.Errorf("answer: %w", err))
			break
		}
		facts := func() {
			h.Set(HdrCache, a.msg.Header.Get(wire.HdrCache))
			h.Set(HdrQueueMs, a.msg.Header.Get(wire.HdrQueueMs))
			h.Set(HdrModel, a.msg.Header.Get(wire.HdrModel))
		}
		if !started {
			facts() // headers of a whole answer
		}
		begin()
		_, _ = w.Write(out)
		if fr.stream {
			facts() // trailers of a stream
		}
		g.m.observe(fr.door, fr.endpoint, "", start)
		return
	}
	if started {
		_, _ = w.Write(fr.inStream(f))
		g.m.observe(fr.door, fr.endpoint, f.Code, start)
		return
	}
	g.writeFailure(w, fr.door, fr.endpoint, fr.fail, f, start)
}

// withOp returns the JSON object b with "op" first; b is a marshalled
// Ollama request, which always has "model".
func withOp(op string, b []byte) []byte {
	out := make([]byte, 0, len(b)+16)
	out = append(out, `{"op":"`...)
	out = append(out, op...)
	out = append(out, `",`...)
	return append(out, b[1:]...)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	b, _ := json.Marshal(v)
	_, _ = w.Write(b)
}
