package replay

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fakeReport is a step's report at speed: 10 requests a second per unit
// of speed per priority, with high always fast and low's p95 growing
// with speed (3 s at x6 and above).
func fakeReport(speed float64) *Report {
	sum := func(p95 float64) *Summary {
		return &Summary{Sent: int64(10 * speed), Answered: int64(10 * speed), P50Ms: p95 / 2, P95Ms: p95, P99Ms: p95 * 1.2}
	}
	low := 300 * speed
	if speed >= 6 {
		low = 3000
	}
	all := sum(low)
	all.Sent, all.Answered = 2*all.Sent, 2*all.Answered
	return &Report{
		Sent: all.Sent, Answered: all.Answered, SendSeconds: 1, Latency: all,
		ByPriority: map[string]*Summary{"high": sum(50), "low": sum(low)},
		ByModel:    map[string]*Summary{"herd-tiny": all},
	}
}

func TestCapacitySearch(t *testing.T) {
	cfg := DefaultCapacityConfig()
	cfg.StepTime = time.Second
	var speeds []float64
	c, err := SearchCapacity(t.Context(), cfg, func(_ context.Context, speed float64) (*Report, error) {
		speeds = append(speeds, speed)
		return fakeReport(speed), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 1, 2, 4, 8 (missed), then bisection between 4 and 8.
	if len(speeds) < 5 || speeds[0] != 1 || speeds[3] != 8 || speeds[4] <= 4 || speeds[4] >= 8 {
		t.Fatalf("speeds tried %v: want doubling from 1 to the first miss (8), then between 4 and 8", speeds)
	}
	if !strings.HasPrefix(c.Stopped, "converged") || c.Speed < 5 || c.Speed >= 6 || c.Speed*(1+cfg.Precision) < lowestMiss(c) {
		t.Errorf("capacity x%v (%s) after %v: want converged below x6 within 10%% of the lowest miss", c.Speed, c.Stopped, speeds)
	}
	if c.Rate != float64(2*int64(10*c.Speed)) {
		t.Errorf("rate %v at x%v, want the step's measured 20/s per unit", c.Rate, c.Speed)
	}
	byName := map[string]GroupCapacity{}
	for _, g := range c.ByPriority {
		byName[g.Name] = g
	}
	if hi := byName["high"]; hi.Speed != 8 || hi.Rate != 80 {
		t.Errorf("high's capacity %+v: want the highest speed tried (x8, 80/s): it always held", hi)
	}
	if lo := byName["low"]; lo.Speed != c.Speed {
		t.Errorf("low's capacity x%v, want the overall x%v (low is what misses)", lo.Speed, c.Speed)
	}
	if len(c.ByModel) != 1 || c.ByModel[0].Name != "herd-tiny" {
		t.Errorf("by model %+v", c.ByModel)
	}
	var b strings.Builder
	if err := c.WriteText(&b); err != nil || !strings.Contains(b.String(), "capacity: ") {
		t.Errorf("text: %v\n%s", err, b.String())
	}
	b.Reset()
	if err := c.WriteHTML(&b); err != nil || !strings.Contains(b.String(), "<svg") {
		t.Errorf("html: %v", err)
	}
}

func lowestMiss(c *Capacity) float64 {
	m := 1e9
	for _, st := range c.Steps {
		if !st.Held {
			m = min(m, st.Speed)
		}
	}
	return m
}

// TestCapacitySearchBounds: the search stops within its bounds, whatever
// the backend does: at MaxSteps when every step holds, at Max, at MaxTotal
// on a clock that advances a step's time per step, and within MaxTotal
// (real time) when a replay hangs.
func TestCapacitySearchBounds(t *testing.T) {
	holds := func(_ context.Context, speed float64) (*Report, error) { return fakeReport(1), nil }
	t.Run("max steps", func(t *testing.T) {
		cfg := DefaultCapacityConfig()
		cfg.StepTime, cfg.MaxSteps = time.Second, 4
		n := 0
		c, err := SearchCapacity(t.Context(), cfg, func(ctx context.Context, s float64) (*Report, error) { n++; return holds(ctx, s) })
		if err != nil || n != 4 || len(c.Steps) != 4 || c.Speed != 8 || !strings.HasPrefix(c.Stopped, "max steps") {
			t.Errorf("%d replays, capacity x%v, stopped %q, err %v: want 4 replays, x8, max steps", n, c.Speed, c.Stopped, err)
		}
	})
	t.Run("max speed", func(t *testing.T) {
		cfg := DefaultCapacityConfig()
		cfg.StepTime, cfg.Max = time.Second, 5
		c, err := SearchCapacity(t.Context(), cfg, holds)
		if err != nil || c.Speed != 5 || len(c.Steps) != 4 || !strings.HasPrefix(c.Stopped, "held at the max") {
			t.Errorf("capacity x%v after %d steps, stopped %q, err %v: want 1, 2, 4, 5 and held at the max", c.Speed, len(c.Steps), c.Stopped, err)
		}
	})
	t.Run("missed at min", func(t *testing.T) {
		cfg := DefaultCapacityConfig()
		cfg.StepTime, cfg.Min = time.Second, 0.25
		c, err := SearchCapacity(t.Context(), cfg, func(context.Context, float64) (*Report, error) {
			r := fakeReport(1)
			r.Latency.P95Ms = 10_000
			return r, nil
		})
		if err != nil || c.Speed != 0 || len(c.Steps) != 3 || !strings.HasPrefix(c.Stopped, "missed even") {
			t.Errorf("capacity x%v after %d steps, stopped %q: want none after 1, 0.5, 0.25", c.Speed, len(c.Steps), c.Stopped)
		}
	})
	t.Run("max total on the clock", func(t *testing.T) {
		cfg := DefaultCapacityConfig()
		cfg.StepTime, cfg.MaxTotal = 10*time.Second, 35*time.Second
		now := time.Unix(0, 0)
		c, err := searchCapacity(t.Context(), cfg, func(ctx context.Context, s float64) (*Report, error) {
			now = now.Add(cfg.StepTime)
			return holds(ctx, s)
		}, func() time.Time { return now })
		if err != nil || len(c.Steps) != 3 || !strings.HasPrefix(c.Stopped, "max total") {
			t.Errorf("%d steps, stopped %q, err %v: want 3 steps of 10s within 35s", len(c.Steps), c.Stopped, err)
		}
	})
	t.Run("a replay that hangs", func(t *testing.T) {
		cfg := DefaultCapacityConfig()
		cfg.StepTime, cfg.MaxTotal = 100*time.Millisecond, 300*time.Millisecond
		begin := time.Now()
		c, err := SearchCapacity(t.Context(), cfg, func(ctx context.Context, s float64) (*Report, error) {
			if s > 1 {
				<-ctx.Done() // the backend never answers
			}
			return fakeReport(1), nil
		})
		took := time.Since(begin)
		if err != nil || took > cfg.MaxTotal+200*time.Millisecond || len(c.Steps) != 2 || c.Steps[1].Held || c.Speed != 1 {
			t.Errorf("took %v (max total %v), %d steps, capacity x%v, stopped %q, err %v", took, cfg.MaxTotal, len(c.Steps), c.Speed, c.Stopped, err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, cfg := range []CapacityConfig{{}, {StepTime: time.Minute, MaxTotal: time.Second}, {StepTime: time.Second, Start: 2, Max: 1}} {
			if _, err := SearchCapacity(t.Context(), cfg, holds); err == nil {
				t.Errorf("%+v: no error", cfg)
			}
		}
	})
}
