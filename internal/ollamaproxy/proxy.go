package ollamaproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Outcomes of a call, as counted by Proxy.Outcomes; a call that ended with
// a status counts under that status ("200", "503", ...).
const (
	// Unfinished is a call still running.
	Unfinished = "unfinished"
	// Dropped is a call whose Ollama failed (died, refused the connection)
	// or whose Hook dropped it: the proxy dropped the worker's connection.
	Dropped = "dropped"
	// Closed is a call the worker closed before it ended.
	Closed = "closed"
)

// Call is one HTTP call a worker made to Ollama, as the proxy saw it.
type Call struct {
	// Worker names the URL the call came in on (URLFor); empty for URL.
	Worker string
	Path   string
	Body   []byte
	Start  time.Time
	// Status is the status the worker got (0 until it got one).
	Status int
	// Bytes counts the answer's body bytes passed to the worker so far.
	Bytes int64
	// Done is set when the call ended, at End.
	Done bool
	End  time.Time
	// WorkerGone is set when the worker closed the call before it ended
	// (it canceled, or it died).
	WorkerGone bool
	// Dropped is set when Ollama failed (died, refused the connection) or
	// a Hook dropped the call, and the proxy dropped the worker's
	// connection in turn.
	Dropped bool
	// UpstreamErr is the error talking to Ollama, if any (Ollama died, or
	// the worker went away first).
	UpstreamErr error
	// Injected names the fault a Hook injected in the call (MarkInjected),
	// if any.
	Injected string
}

// Has reports whether the call's body contains s.
func (c Call) Has(s string) bool { return bytes.Contains(c.Body, []byte(s)) }

// Hook sees every call before it goes to Ollama. It returns true when it
// has answered the call itself: w records the status and bytes in c, and
// the call goes no further. It may block (the call waits) and may panic
// with http.ErrAbortHandler to drop the worker's connection (the call
// counts as Dropped). It must not change c's fields but through the
// Proxy's methods; Path and Body it may read.
type Hook func(w http.ResponseWriter, r *http.Request, c *Call) bool

// Option configures a Proxy.
type Option func(*Proxy)

// WithHook runs h on every call before it goes to Ollama. Default: none.
func WithHook(h Hook) Option { return func(p *Proxy) { p.hook = h } }

// Proxy is a reverse proxy to one Ollama that records every call. It is
// safe for concurrent use.
type Proxy struct {
	// URL is the proxy's base URL; its calls have no Worker.
	URL string

	t    testing.TB
	rp   *httputil.ReverseProxy
	hook Hook
	// mu guards calls and the fields of every call.
	mu    sync.Mutex
	calls []*Call
}

type (
	callKey   struct{}
	workerKey struct{}
)

// New starts a proxy to the Ollama at target; it is closed when the test
// ends.
func New(t testing.TB, target string, opts ...Option) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t}
	for _, o := range opts {
		o(p)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	p.rp = &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			if c, ok := r.Context().Value(callKey{}).(*Call); ok {
				p.mu.Lock()
				c.UpstreamErr = err
				p.mu.Unlock()
			}
			panic(http.ErrAbortHandler) // the worker sees the connection drop, as with Ollama dying
		},
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// URLFor returns a new base URL of the proxy for one worker, so that its
// calls are told apart (Call.Worker). Its server is closed when the test
// ends.
func (p *Proxy) URLFor(worker string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), workerKey{}, worker)))
	}))
	p.t.Cleanup(srv.Close)
	return srv.URL
}

// ServeHTTP records the call, runs the Hook and passes the call on to
// Ollama.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	worker, _ := r.Context().Value(workerKey{}).(string)
	c := &Call{Worker: worker, Path: r.URL.Path, Body: body, Start: time.Now()}
	p.mu.Lock()
	p.calls = append(p.calls, c)
	p.mu.Unlock()
	r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
	defer func() {
		v := recover()
		p.mu.Lock()
		c.Done, c.End = true, time.Now()
		c.WorkerGone = r.Context().Err() != nil
		c.Dropped = v != nil && !c.WorkerGone
		p.mu.Unlock()
		if v != nil {
			panic(v)
		}
	}()
	cw := &countingWriter{ResponseWriter: w, p: p, c: c}
	if p.hook != nil && p.hook(cw, r, c) {
		return
	}
	p.rp.ServeHTTP(cw, r)
}

// MarkInjected records in c.Injected that a Hook injected fault in c.
func (p *Proxy) MarkInjected(c *Call, fault string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.Injected = fault
}

// Calls returns copies of the calls to path whose body contains every one
// of has, in the order they started. An empty path matches every path.
func (p *Proxy) Calls(path string, has ...string) []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Call
next:
	for _, c := range p.calls {
		if path != "" && c.Path != path {
			continue
		}
		for _, s := range has {
			if !c.Has(s) {
				continue next
			}
		}
		out = append(out, *c)
	}
	return out
}

// InFlight counts the calls to path not yet ended.
func (p *Proxy) InFlight(path string) int {
	n := 0
	for _, c := range p.Calls(path) {
		if !c.Done {
			n++
		}
	}
	return n
}

// Outcomes counts the calls to path by how they ended: Unfinished,
// Dropped, Closed, or the status the worker got ("200", "503", ...).
func (p *Proxy) Outcomes(path string) map[string]int {
	n := map[string]int{}
	for _, c := range p.Calls(path) {
		switch {
		case !c.Done:
			n[Unfinished]++
		case c.Dropped:
			n[Dropped]++
		case c.WorkerGone:
			n[Closed]++
		default:
			n[fmt.Sprint(c.Status)]++
		}
	}
	return n
}

// countingWriter records the status and body bytes the worker gets in c.
type countingWriter struct {
	http.ResponseWriter
	p *Proxy
	c *Call
}

func (w *countingWriter) WriteHeader(code int) {
	w.p.mu.Lock()
	if w.c.Status == 0 {
		w.c.Status = code
	}
	w.p.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	if w.c.Status == 0 {
		w.c.Status = http.StatusOK
	}
	w.c.Bytes += int64(len(b))
	w.p.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
