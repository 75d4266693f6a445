// Package stack runs herd in one process: the embedded NATS server with
// JetStream, the streams, the dispatcher, a worker, the optimizer and the
// ops endpoints.
// It is `herd up`, the default for one machine.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/dispatcher"
	"github.com/sutazai/herd/internal/embedded"
	"github.com/sutazai/herd/internal/gateway"
	"github.com/sutazai/herd/internal/live"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/pool"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/worker"
)

// ErrNoOllama is returned when no Ollama is configured and none can be run.
var ErrNoOllama = errors.New("no ollama")

// Overrides turns the queue settings into stream overrides.
func Overrides(c config.Config) provision.Overrides {
	return provision.Overrides{
		Replicas:    c.NATS.Replicas,
		MaxRequests: int64(c.Queue.MaxRequests),
		MaxPerAgent: int64(c.Queue.MaxPerAgent),
		ResultsTTL:  c.Queue.ResultsTTL,
		AckWait:     c.Queue.AckWait,
		MaxDeliver:  c.Queue.MaxDeliver,

		CaptureMaxAge:   c.Capture.MaxAge,
		CaptureMaxBytes: c.Capture.MaxBytes,
	}
}

// Provision creates or updates the streams, consumers and buckets.
func Provision(ctx context.Context, nc *nats.Conn, c config.Config) (*provision.Definitions, error) {
	defs, err := provision.Load(Overrides(c))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := defs.Ensure(pctx, js); err != nil {
		return nil, fmt.Errorf("provision streams: %w", err)
	}
	return defs, nil
}

// OllamaURL returns the configured Ollama: the config's url, else
// OLLAMA_HOST, else "".
func OllamaURL(c config.Config) string {
	if c.Ollama.URL != "" {
		return c.Ollama.URL
	}
	return os.Getenv("OLLAMA_HOST")
}

// Up runs herd in this process until ctx ends, then shuts down in order:
// the dispatcher stops taking requests and publishes what it holds, the
// worker finishes running batches, the server stops last. ready is called
// with the NATS URL once requests are accepted.
func Up(ctx context.Context, c config.Config, log *zap.Logger, ready func(natsURL string)) error {
	ollamaURL, stopOllama, err := startOllama(ctx, c, log)
	if err != nil {
		return err
	}
	defer stopOllama()
	keys, err := apiKeys(c, log)
	if err != nil {
		return err
	}
	srv, passwords, err := embedded.StartAuth(c.Server, keys.Agents()...)
	if err != nil {
		return err
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		log.Info("nats server stopped")
	}()
	url := srv.ClientURL()
	connect := connector(c, srv, url, passwords, log)
	nc, err := connect("herd-dispatcher", auth.Dispatcher)
	if err != nil {
		return err
	}
	defer nc.Close()
	wnc, err := connect("herd-worker", auth.Worker)
	if err != nil {
		return err
	}
	defer wnc.Close()
	defs, err := Provision(ctx, nc, c)
	if err != nil {
		return err
	}
	reg := ops.NewRegistry()
	var p components
	if p.d, err = dispatcher.New(ctx, c.Dispatcher, nc, log, reg); err != nil {
		return err
	}
	if err := p.newWorkers(ctx, &c, defs, connect, wnc, ollamaURL, log, reg); err != nil {
		return err
	}
	onc, err := connect("herd-optimizer", auth.Optimizer)
	if err != nil {
		return err
	}
	defer onc.Close()
	if p.opt, err = optimizer.New(ctx, c.Optimizer, onc, log, reg); err != nil {
		return err
	}

	lnc, err := connect("herd-live", auth.Optimizer)
	if err != nil {
		return err
	}
	defer lnc.Close()
	if err := p.newHTTP(lnc, nc, log, reg); err != nil {
		return err
	}

	// The HTTP doors (api.listen): a NATS client of the ask door, as
	// bin/gateway is on its own.
	gnc, err := connect("herd-gateway", auth.Gateway)
	if err != nil {
		return err
	}
	defer gnc.Close()
	if p.gw, err = gateway.New(c.API, gnc, keys, log, reg); err != nil {
		return err
	}
	p.gln = listenAPI(c, log)
	return p.run(ctx, c, log, func() {
		log.Info("ready", zap.String("nats", url), zap.String("ollama", ollamaURL), zap.String("http", c.HTTP.Listen), zap.String("api", c.API.Listen))
		if ready != nil {
			ready(url)
		}
	})
}

// startOllama returns the Ollama the worker calls: the configured one,
// else one it starts (a managed Ollama with the generated model), else ""
// for a pool, which runs its own. stop ends a managed Ollama.
func startOllama(ctx context.Context, c config.Config, log *zap.Logger) (url string, stop func(), err error) {
	ollamaURL := OllamaURL(c)
	// A pool (pool.instances auto or above 1) runs its own Ollamas, one
	// per instance (internal/pool).
	usePool := c.Pool.Enabled()
	if usePool && ollamaURL != "" {
		return "", nil, fmt.Errorf("pool.instances %s runs a managed Ollama per instance: leave ollama.url and OLLAMA_HOST empty (%s is set)", c.Pool.Instances, ollamaURL)
	}
	if ollamaURL != "" || usePool {
		return ollamaURL, func() {}, nil
	}
	// No Ollama configured: run our own, with the generated model.
	mctx, stopOllama := context.WithCancel(context.WithoutCancel(ctx))
	inst, err := managed.Start(mctx, c.ManagedFor(), log)
	if err != nil {
		stopOllama()
		if errors.Is(err, managed.ErrNoBinary) {
			return "", nil, fmt.Errorf("%w: no ollama.url or OLLAMA_HOST, and no Ollama binary to run (make tools installs the pinned build into bin/): %v", ErrNoOllama, err)
		}
		return "", nil, fmt.Errorf("start managed ollama: %w", err)
	}
	log.Info("managed ollama ready", zap.String("url", inst.URL()), zap.Int("pid", inst.PID()))
	return inst.URL(), func() {
		stopOllama()
		_ = inst.Wait()
		log.Info("managed ollama stopped")
	}, nil
}

// apiKeys returns the HTTP doors' API keys: under access control the
// gateway's NATS user may act only as their agents, and a call without a
// key is 401.
func apiKeys(c config.Config, log *zap.Logger) (gateway.Keys, error) {
	keys, err := gateway.LoadKeys(c.API, os.Getenv, os.ReadFile)
	if err != nil {
		return keys, err
	}
	if c.Server.Auth {
		keys = keys.Require()
		if c.API.Listen != "" && len(keys.Agents()) == 0 {
			log.Warn("access control is on and no API key is configured (api.keys, api.keys_file): the HTTP doors answer every call 401")
		}
	}
	return keys, nil
}

// connector returns the function that connects a component, named name,
// to the in-process server srv at url. With access control each component
// logs in as its own role, user.
func connector(c config.Config, srv *server.Server, url string, passwords map[string]string, log *zap.Logger) func(name, user string) (*nats.Conn, error) {
	return func(name, user string) (*nats.Conn, error) {
		opts := []nats.Option{nats.Name(name), nats.InProcessServer(srv), nats.MaxReconnects(-1),
			// Asynchronous errors, permission violations above all, are
			// logged rather than printed.
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				log.Error("nats", zap.String("connection", name), zap.Error(err))
			})}
		if c.Server.Auth {
			ro, err := auth.Client{User: user, Password: passwords[user]}.Options()
			if err != nil {
				return nil, err
			}
			opts = append(opts, ro...)
		}
		// In-process connections need no TLS: a tls:// URL would ask
		// for it.
		return nats.Connect(strings.Replace(url, "tls://", "nats://", 1), opts...)
	}
}

// listenAPI listens on api.listen for the HTTP doors; nil when it is empty
// or cannot be bound.
func listenAPI(c config.Config, log *zap.Logger) net.Listener {
	// herd's own doors are NATS; an api.listen that cannot be bound (a
	// second herd up, another program) leaves herd running without the
	// HTTP doors, said in the log. bin/gateway refuses to start instead.
	if c.API.Listen == "" {
		return nil
	}
	gln, err := net.Listen("tcp", c.API.Listen)
	if err != nil {
		log.Error("HTTP doors not served: api.listen cannot be bound; set api.listen (herd up --api) to a free address, or empty", zap.Error(err))
		return nil
	}
	return gln
}

// components are what Up runs.
type components struct {
	d *dispatcher.Dispatcher
	// w is the worker, or wp the pool of worker instances.
	w  *worker.Worker
	wp *pool.Pool
	// decisions is herd_control, for an auto pool.
	decisions jetstream.KeyValue
	opt       *optimizer.Service
	lc        *live.Collector
	mux       *http.ServeMux
	gw        *gateway.Gateway
	// gln is the HTTP doors' listener; nil when they are not served.
	gln net.Listener
}

// newWorkers makes the worker on wnc calling ollamaURL, or the pool of
// worker instances (c.Pool); for an auto pool it sets c's optimizer scale
// to the pool's bounds.
func (p *components) newWorkers(ctx context.Context, c *config.Config, defs *provision.Definitions, connect func(name, user string) (*nats.Conn, error), wnc *nats.Conn, ollamaURL string, log *zap.Logger, reg *prometheus.Registry) error {
	if !c.Pool.Enabled() {
		oc, err := ollama.NewClient(ollamaURL, c.Ollama.Timeout)
		if err != nil {
			return err
		}
		p.w, err = worker.New(ctx, c.Worker, wnc, oc, defs, log, reg)
		return err
	}
	wp, err := newPool(*c, defs, connect, log, reg)
	if err != nil {
		return err
	}
	p.wp = wp
	if c.Pool.Auto() {
		// The optimizer decides within the pool's bounds.
		c.Optimizer.Scale.MinInstances, c.Optimizer.Scale.MaxInstances = p.wp.Bounds()
		b, err := provision.Bind(ctx, wnc)
		if err != nil {
			return err
		}
		p.decisions = b.Control
	}
	return nil
}

// newHTTP makes the ops handler (metrics, readiness of the dispatcher on
// nc) with the live page mounted, its collector on lnc.
func (p *components) newHTTP(lnc, nc *nats.Conn, log *zap.Logger, reg *prometheus.Registry) error {
	var err error
	if p.lc, err = live.New(lnc, live.DefaultConfig(), log); err != nil {
		return err
	}
	// Requests by door: the HTTP doors' from the gateway's counter in reg.
	p.lc.CountDoors(reg)
	p.mux = ops.Handler(reg, DispatcherReady(nc, p.d))
	p.lc.Mount(p.mux)
	return nil
}

// run runs the components until ctx ends or one of them stops, calling
// ready once the dispatcher accepts requests, then stops them in order
// and returns the first error.
func (p *components) run(ctx context.Context, c config.Config, log *zap.Logger, ready func()) error {
	dctx, stopD := context.WithCancel(context.WithoutCancel(ctx))
	defer stopD()
	wctx, stopW := context.WithCancel(context.WithoutCancel(ctx))
	defer stopW()
	hctx, stopH := context.WithCancel(context.WithoutCancel(ctx))
	defer stopH()
	octx, stopO := context.WithCancel(context.WithoutCancel(ctx))
	defer stopO()
	gctx, stopG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopG()

	errc := make(chan error, 6)
	var wg sync.WaitGroup
	if p.wp != nil {
		wg.Go(func() { errc <- named("pool", p.wp.Run(wctx)) })
		if p.decisions != nil {
			since := time.Now()
			wg.Go(func() { p.wp.Watch(wctx, p.decisions, since) })
		}
	} else {
		wg.Go(func() { errc <- named("worker", p.w.Run(wctx)) })
	}
	wg.Go(func() { errc <- named("dispatcher", p.d.Run(dctx)) })
	wg.Go(func() { errc <- named("optimizer", p.opt.Run(octx)) })
	if p.gln != nil {
		wg.Go(func() { errc <- named("api", p.gw.Serve(gctx, p.gln)) })
	}
	wg.Go(func() {
		errc <- named("http", ops.Serve(hctx, c.HTTP.Listen, p.mux, log))
	})
	// The live page's collector stops with the HTTP server, which ends
	// its event streams so that the server can shut down.
	if c.HTTP.Listen != "" {
		wg.Go(func() { errc <- named("live", p.lc.Run(hctx)) })
	}
	first := p.wait(ctx, errc, log, ready)
	log.Info("shutting down: draining in-flight work")
	stopG() // first: no new HTTP calls; running ones end with their answers
	stopD()
	stopW()
	stopO()
	stopH()
	wg.Wait()
	close(errc)
	for err := range errc {
		if first == nil && err != nil {
			first = err
		}
	}
	return first
}

// wait waits until ctx ends or a component stops (its error, returned),
// calling ready once the dispatcher accepts requests.
func (p *components) wait(ctx context.Context, errc <-chan error, log *zap.Logger, ready func()) error {
	// Ready means requests are accepted: the dispatcher listens on the ask
	// door (an ask sent at once would otherwise find no responders).
	var first error
	stopped := func(err error) {
		first = err
		log.Error("component stopped", zap.Error(err))
	}
	select {
	case <-p.d.Ready():
		ready()
		select {
		case <-ctx.Done():
		case err := <-errc:
			stopped(err)
		}
	case <-ctx.Done():
	case err := <-errc:
		stopped(err)
	}
	return first
}

// newPool returns the pool of worker instances of c.Pool, each a worker
// with its own managed Ollama (c.ManagedFor, pinned to its slot's cores).
func newPool(c config.Config, defs *provision.Definitions, connect func(name, user string) (*nats.Conn, error), log *zap.Logger, reg *prometheus.Registry) (*pool.Pool, error) {
	cores, err := pool.Cores()
	if err != nil {
		return nil, err
	}
	start := pool.Workers(pool.Deps{
		Worker: c.Worker, Managed: c.ManagedFor(), OllamaTimeout: c.Ollama.Timeout,
		Connect:  func(name string) (*nats.Conn, error) { return connect(name, auth.Worker) },
		Defs:     defs,
		Registry: reg,
		Log:      log,
	})
	return pool.New(c.Pool, cores, start, log, reg)
}

func named(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Connect dials the configured NATS (nats.url, with nats.creds, user,
// password, inbox prefix and TLS when set), reconnecting forever: services
// ride out a server restart. extra options come last and so win (a command
// line tool's connect timeout, for example).
func Connect(c config.Config, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	login, err := c.NATS.Client().Options()
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", c.NATS.URL, err)
	}
	opts = append(append(opts, login...), extra...)
	nc, err := nats.Connect(c.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", c.NATS.URL, err)
	}
	return nc, nil
}

// Ready reports whether nc is connected, for /readyz.
func Ready(nc *nats.Conn) func() error {
	return func() error {
		if !nc.IsConnected() {
			return errors.New("nats " + nc.Status().String())
		}
		return nil
	}
}

// DispatcherReady is Ready for a process that runs d: ready once connected
// and d listens on every subject it serves (requests are accepted).
func DispatcherReady(nc *nats.Conn, d *dispatcher.Dispatcher) func() error {
	connected := Ready(nc)
	return func() error {
		select {
		case <-d.Ready():
			return connected()
		default:
			return errors.New("dispatcher starting")
		}
	}
}
