package live

import (
	"embed"
	"encoding/json"
	"net/http"
	"time"
)

//go:embed page
var page embed.FS

// Handler returns the live page's handler: GET /live (the page),
// GET /live/events (server-sent events, a snapshot now and then one a
// second until the client leaves or the collector stops) and
// GET /live/snapshot (the current snapshot as JSON). Mount it on a mux with
// Mount, or serve it alone.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	c.Mount(mux)
	return mux
}

// Mount registers the live page's routes (see Handler) on mux. It panics,
// as ServeMux does, when a route is already registered.
func (c *Collector) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /live", c.servePage)
	mux.HandleFunc("GET /live/{$}", c.servePage)
	mux.HandleFunc("GET /live/events", c.serveEvents)
	mux.HandleFunc("GET /live/snapshot", c.serveSnapshot)
}

func (c *Collector) servePage(w http.ResponseWriter, _ *http.Request) {
	b, err := page.ReadFile("page/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_, _ = w.Write(b)
}

func (c *Collector) serveSnapshot(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_ = json.NewEncoder(w).Encode(c.Snapshot())
}

func (c *Collector) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func() bool {
		b, err := json.Marshal(c.Snapshot())
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write([]byte("event: snapshot\ndata: ")); err != nil {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		if _, err := w.Write([]byte("\n\n")); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	_, _ = w.Write([]byte("retry: 2000\n\n"))
	if !send() {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.done:
			return
		case <-t.C:
			if !send() {
				return
			}
		}
	}
}
