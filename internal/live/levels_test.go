package live

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/slo"
	"github.com/sutazai/herd/internal/wire"
)

// TestLevelsFollowTargets: the page judges each priority against the
// targets the optimizer wrote to herd_control (slo key), not thresholds of
// its own: the same outcomes are met under loose targets and missed under
// the seed's.
func TestLevelsFollowTargets(t *testing.T) {
	nc, js, pub := herd(t)
	c, err := New(nc, DefaultConfig(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.every = time.Hour
	if s := c.Snapshot(); len(s.Levels) != 3 || !s.Levels[0].Met || s.Levels[0].TargetP95Ms != 2000 {
		t.Fatalf("before any outcome: %+v, want 3 levels met with the seed's targets", s.Levels)
	}
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	loose := slo.Default()
	loose.High = slo.Target{P95: 10 * time.Second, P99: 20 * time.Second, ErrorRate: 0.5}
	if _, err := kv.Put(t.Context(), slo.ControlKey, loose.Marshal()); err != nil {
		t.Fatal(err)
	}
	run(t, c)
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.targets.High != loose.High {
			return errors.New("targets not read yet")
		}
		return nil
	})
	now := time.Now()
	for i := range 10 {
		status := 200
		if i == 0 {
			status = 503
		}
		pub.Request(&events.Request{At: now, ID: strconv.Itoa(i), Model: "a", Priority: "high", Status: status, TotalMs: 3000, Worker: "w1"})
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if c.counted() < 10 {
			return fmt.Errorf("%d events", c.counted())
		}
		return nil
	})
	c.tick(time.Now())
	c.tick(time.Now().Add(time.Second))
	high := c.Snapshot().Levels[0]
	if high.Priority != "high" || high.Count != 10 || high.ErrorRate != 0.1 || !high.Met || high.TargetP95Ms != 10000 {
		t.Errorf("under loose targets: %+v, want 10 outcomes, 10%% errors, met", high)
	}
	if _, err := kv.Put(t.Context(), slo.ControlKey, slo.Default().Marshal()); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		c.tick(time.Now().Add(time.Second))
		high = c.Snapshot().Levels[0]
		if high.Met || len(high.Misses) != 2 {
			return fmt.Errorf("under the seed's targets: %+v, want p95 and errors missed", high)
		}
		return nil
	})
	t.Logf("missed: %v", high.Misses)
}
