// Package ops serves what operators and orchestrators poll on every herd
// process: /metrics (Prometheus), /healthz (the process is alive) and
// /readyz (it is connected and serving).
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from reg, /healthz, and /readyz from ready (nil
// error means ready).
func Handler(reg *prometheus.Registry, ready func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve listens on addr and serves h until ctx ends (Listen, then
// Server.Serve). An empty addr serves nothing and returns when ctx ends.
// It returns an error when it cannot listen.
func Serve(ctx context.Context, addr string, h http.Handler, log *zap.Logger) error {
	s, err := Listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, h, log)
}

// Server is an HTTP listener bound by Listen, not yet serving.
type Server struct {
	ln net.Listener // nil: serve nothing
}

// Listen binds addr at once, so that a port another process holds is an
// error at start, naming the address, rather than a process running
// without /metrics. An empty addr binds nothing.
func Listen(addr string) (*Server, error) {
	if addr == "" {
		return &Server{}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s (http.listen, --http): %w", addr, err)
	}
	return &Server{ln: ln}, nil
}

// Addr returns the bound address ("" when none), with the port the system
// chose for ":0".
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Serve serves h until ctx ends, then shuts down within five seconds. It
// blocks, and returns nil when ctx ended or the server's error. Without
// an address it only waits for ctx.
func (s *Server) Serve(ctx context.Context, h http.Handler, log *zap.Logger) error {
	if s.ln == nil {
		<-ctx.Done()
		return nil
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Info("http serving", zap.String("addr", s.ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
