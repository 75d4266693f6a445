package pool

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/worker"
)

// Deps is what Workers builds each instance from.
type Deps struct {
	// Worker is every instance's worker configuration; each gets the ID
	// <ID>-w<slot> and a CPUBudget of its slot's cores.
	Worker worker.Config
	// Managed is every instance's Ollama; each gets its slot's CPUs, the
	// state directory Dir for slot 0 and Dir-<slot> for the others (so
	// each keeps its own models and log), and a fixed Listen port plus
	// its slot (port 0 stays 0: a free port each).
	Managed managed.Config
	// OllamaTimeout bounds one Ollama call (ollama.timeout).
	OllamaTimeout time.Duration
	// Connect returns a new NATS connection named name for one worker.
	Connect func(name string) (*nats.Conn, error)
	// Defs are the stream definitions the workers' consumers follow.
	Defs *provision.Definitions
	// Registry receives each instance's metrics while it runs (may be nil).
	Registry prometheus.Registerer
	// Log is named per instance.
	Log *zap.Logger
}

// Workers returns the StartFunc of real instances: a managed Ollama pinned
// to the slot's cores, then a worker calling it on its own connection.
func Workers(d Deps) StartFunc {
	return func(ctx context.Context, s Slot) (Member, error) {
		log := d.Log.With(zap.Int("slot", s.Index))
		mcfg, err := managedFor(d.Managed, s)
		if err != nil {
			return nil, err
		}
		// The Ollama outlives ctx (it stops after its worker drained);
		// ctx ending during the start aborts it.
		mctx, stopOllama := context.WithCancel(context.WithoutCancel(ctx))
		abort := context.AfterFunc(ctx, stopOllama)
		inst, err := managed.Start(mctx, mcfg, log)
		if !abort() && err == nil {
			err = ctx.Err()
		}
		if err != nil {
			stopOllama()
			if inst != nil {
				_ = inst.Wait()
			}
			return nil, fmt.Errorf("managed ollama: %w", err)
		}
		m := &member{inst: inst, stopOllama: stopOllama, done: make(chan struct{}), reg: &scoped{reg: d.Registry}}
		fail := func(err error) (Member, error) {
			m.stopWorker = func() {}
			close(m.done)
			m.Stop()
			return nil, err
		}
		oc, err := ollama.NewClient(inst.URL(), d.OllamaTimeout)
		if err != nil {
			return fail(err)
		}
		if m.nc, err = d.Connect(fmt.Sprintf("herd-worker-%d", s.Index)); err != nil {
			return fail(err)
		}
		wcfg := d.Worker
		wcfg.ID = fmt.Sprintf("%s-w%d", d.Worker.ID, s.Index)
		wcfg.CPUBudget = float64(len(s.CPUs))
		wctx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
		w, err := worker.New(wctx, wcfg, m.nc, oc, d.Defs, d.Log, m.reg)
		if err != nil {
			stopWorker()
			return fail(err)
		}
		m.stopWorker = stopWorker
		go func() {
			defer close(m.done)
			if err := w.Run(wctx); err != nil {
				log.Error("worker ended", zap.Error(err))
			}
		}()
		log.Info("instance running", zap.String("worker", wcfg.ID), zap.String("ollama", inst.URL()), zap.Int("ollama_pid", inst.PID()), zap.Ints("cpus", s.CPUs))
		return m, nil
	}
}

// managedFor returns slot s's Ollama configuration from the template.
func managedFor(c managed.Config, s Slot) (managed.Config, error) {
	c.CPUs = s.CPUs
	if s.Index > 0 {
		c.Dir = c.Dir + "-" + strconv.Itoa(s.Index)
		host, port, err := net.SplitHostPort(c.Listen)
		if err == nil && port != "" && port != "0" {
			n, err := strconv.Atoi(port)
			if err != nil {
				return c, fmt.Errorf("managed listen %q: %w", c.Listen, err)
			}
			c.Listen = net.JoinHostPort(host, strconv.Itoa(n+s.Index))
		}
	}
	return c, nil
}

// member is a running instance: a worker and its managed Ollama.
type member struct {
	inst       *managed.Instance
	nc         *nats.Conn
	reg        *scoped
	stopWorker context.CancelFunc
	stopOllama context.CancelFunc
	done       chan struct{} // closed when the worker's Run returned
	once       sync.Once
}

func (m *member) Done() <-chan struct{} { return m.done }

// Stop drains the worker (worker.Run: stop fetching, finish or hand back
// the batches), then stops the Ollama and removes the instance's metrics.
func (m *member) Stop() {
	m.once.Do(func() {
		m.stopWorker()
		<-m.done
		m.stopOllama()
		_ = m.inst.Wait()
		if m.nc != nil {
			m.nc.Close()
		}
		m.reg.unregisterAll()
	})
}

// scoped is a Registerer that remembers what it registered, so that a
// stopped instance's metrics leave the registry (and a later instance of
// the same slot can register its own). It gathers from the registry it
// wraps when that is a Gatherer (the worker's micro service reads counters
// through it).
type scoped struct {
	reg prometheus.Registerer
	// mu guards cs.
	mu sync.Mutex
	cs []prometheus.Collector
}

func (s *scoped) Register(c prometheus.Collector) error {
	if s.reg == nil {
		return nil
	}
	if err := s.reg.Register(c); err != nil {
		return err
	}
	s.mu.Lock()
	s.cs = append(s.cs, c)
	s.mu.Unlock()
	return nil
}

func (s *scoped) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := s.Register(c); err != nil {
			panic(err)
		}
	}
}

func (s *scoped) Unregister(c prometheus.Collector) bool {
	if s.reg == nil {
		return false
	}
	return s.reg.Unregister(c)
}

func (s *scoped) Gather() ([]*dto.MetricFamily, error) {
	if g, ok := s.reg.(prometheus.Gatherer); ok {
		return g.Gather()
	}
	return nil, nil
}

func (s *scoped) unregisterAll() {
	s.mu.Lock()
	cs := s.cs
	s.cs = nil
	s.mu.Unlock()
	for _, c := range cs {
		s.reg.Unregister(c)
	}
}
