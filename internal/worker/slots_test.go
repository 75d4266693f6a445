package worker

import (
	"context"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/sched"
	"github.com/sutazai/herd/internal/wire"
)

// TestSlotPoolPriority: a freed slot goes to a waiting high call before
// earlier-waiting low calls, and low never takes the reserved slot.
func TestSlotPoolPriority(t *testing.T) {
	p := newSlotPool(sched.Slots{Total: 2, ReservedHigh: 1}, sched.Config{NormalAgeAfter: time.Hour, LowAgeAfter: time.Hour})
	ctx := t.Context()
	if err := p.acquire(ctx, wire.Low, "m"); err != nil {
		t.Fatal(err)
	}
	// The second slot is reserved: a low call must wait...
	lowGot := make(chan struct{})
	go func() {
		if p.acquire(ctx, wire.Low, "m") == nil {
			close(lowGot)
		}
	}()
	// ...while a high call gets it at once.
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := p.acquire(hctx, wire.High, "m"); err != nil {
		t.Fatalf("high call did not get the reserved slot: %v", err)
	}
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters[2]) == 1 })
	// A second high call queues behind; when a slot frees it goes to high.
	highGot := make(chan struct{})
	go func() {
		if p.acquire(ctx, wire.High, "m") == nil {
			close(highGot)
		}
	}()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters[0]) == 1 })
	p.claim(wire.Low, "m", 1)
	p.release(wire.Low, "m")
	select {
	case <-highGot:
	case <-lowGot:
		t.Fatal("a freed slot went to low while high waited")
	case <-time.After(time.Second):
		t.Fatal("no one got the freed slot")
	}
	p.claim(wire.High, "m", 1)
	p.release(wire.High, "m")
	select {
	case <-lowGot:
	case <-time.After(time.Second):
		t.Fatal("low was never served")
	}
}

func TestCanFetch(t *testing.T) {
	p := newSlotPool(sched.Slots{Total: 2, ReservedHigh: 1}, sched.DefaultConfig())
	if got := p.canFetch(wire.Low, false); got != 2 {
		t.Fatalf("idle low room = %d, want 2", got)
	}
	p.claim(wire.High, "m", 1)
	if got := p.canFetch(wire.Low, false); got != 0 {
		t.Fatalf("low room with high work waiting = %d, want 0", got)
	}
	if got := p.canFetch(wire.Low, true); got != 2 {
		t.Fatalf("aged low room = %d, want 2", got)
	}
	if got := p.canFetch(wire.High, false); got != 3 {
		t.Fatalf("high room = %d, want 3", got)
	}
}

// TestSlotPoolModelLimit: a model at its limit waits without holding back
// another model's call; raising the limit starts it; a model claims at
// most twice its limit.
func TestSlotPoolModelLimit(t *testing.T) {
	p := newSlotPool(sched.Slots{Total: 4}, sched.DefaultConfig())
	p.setLimits(map[string]int{"a": 1, "b": 3})
	ctx := t.Context()
	p.claim(wire.Normal, "a", 2)
	if p.canFetchModel("a") {
		t.Fatal("a claimed twice its limit and may fetch more")
	}
	if !p.canFetchModel("b") || !p.canFetchModel("other") {
		t.Fatal("b or an unlimited model may not fetch")
	}
	if err := p.acquire(ctx, wire.Normal, "a"); err != nil {
		t.Fatal(err)
	}
	second := make(chan struct{})
	go func() {
		if p.acquire(ctx, wire.Normal, "a") == nil {
			close(second)
		}
	}()
	waitFor(t, func() bool { return p.load(time.Now())["a"].waiting == 1 })
	// b is not held back by a's waiting call.
	bctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := p.acquire(bctx, wire.Normal, "b"); err != nil {
		t.Fatalf("b waited behind a: %v", err)
	}
	select {
	case <-second:
		t.Fatal("a ran above its limit")
	case <-time.After(20 * time.Millisecond):
	}
	p.setLimits(map[string]int{"a": 2, "b": 2})
	select {
	case <-second:
	case <-time.After(time.Second):
		t.Fatal("raising a's limit did not start its waiting call")
	}
	if l := p.load(time.Now()); l["a"].running != 2 || l["a"].limit != 2 || l["b"].running != 1 {
		t.Fatalf("load %+v", l)
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(time.Millisecond)
	}
}
