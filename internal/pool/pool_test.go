package pool

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/natstest"
)

// fakes records the instances a Pool starts and stops.
type fakes struct {
	mu     sync.Mutex
	events []string
	live   map[int]*fake
}

type fake struct {
	f    *fakes
	slot Slot
	done chan struct{}
	once sync.Once
}

func (m *fake) Done() <-chan struct{} { return m.done }
func (m *fake) Stop() {
	m.once.Do(func() {
		m.f.mu.Lock()
		defer m.f.mu.Unlock()
		m.f.events = append(m.f.events, fmt.Sprintf("stop %d", m.slot.Index))
		delete(m.f.live, m.slot.Index)
	})
}

func (f *fakes) start(_ context.Context, s Slot) (Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf("start %d %v", s.Index, s.CPUs))
	m := &fake{f: f, slot: s, done: make(chan struct{})}
	f.live[s.Index] = m
	return m, nil
}

func (f *fakes) snapshot() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

func TestPoolFollowsDecisions(t *testing.T) {
	f := &fakes{live: map[int]*fake{}}
	cfg := DefaultConfig()
	cfg.Instances = Auto
	p, err := New(cfg, []int{0, 1, 2}, f.start, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	want := func(events ...string) {
		t.Helper()
		natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if got := f.snapshot(); !slices.Equal(got, events) {
				return fmt.Errorf("events %q, want %q", got, events)
			}
			return nil
		})
	}
	want("start 0 [0]")
	p.Decide(3)
	want("start 0 [0]", "start 1 [1]", "start 2 [2]")
	p.Decide(9) // beyond the cores: no change
	p.Decide(1)
	want("start 0 [0]", "start 1 [1]", "start 2 [2]", "stop 2", "stop 1")
	if got := p.Slots(); len(got) != 1 || got[0].Index != 0 {
		t.Errorf("slots %v", got)
	}
	// An instance that ends by itself is started again.
	f.mu.Lock()
	close(f.live[0].done)
	f.mu.Unlock()
	want("start 0 [0]", "start 1 [1]", "start 2 [2]", "stop 2", "stop 1", "stop 0", "start 0 [0]")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want("start 0 [0]", "start 1 [1]", "start 2 [2]", "stop 2", "stop 1", "stop 0", "start 0 [0]", "stop 0")
}

func TestPoolFixedFailsWithoutInstance(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Instances = "2"
	p, err := New(cfg, []int{0, 1}, func(context.Context, Slot) (Member, error) { return nil, fmt.Errorf("no ollama") }, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err == nil {
		t.Fatal("Run started no instance and returned nil")
	}
	if _, err := New(cfg, []int{0}, nil, zaptest.NewLogger(t), nil); err != nil {
		t.Errorf("one core, one per instance: %v", err)
	}
	cfg.CoresPerInstance = 2
	if _, err := New(cfg, []int{0}, nil, zaptest.NewLogger(t), nil); err == nil {
		t.Error("one core holds an instance of two")
	}
}
