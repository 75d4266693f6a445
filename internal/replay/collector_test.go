package replay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

func msec(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// TestCollector: latency counts from the intended time, not from a late
// send; every request ends answered, failed or lost; a second answer is a
// duplicate.
func TestCollector(t *testing.T) {
	c := NewCollector(t0)
	hi, lo := rec(0, "a", wire.High, "m1"), rec(0, "b", wire.Low, "m2")
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	c.Sent(0, &hi, at(0), at(0))
	c.Sent(1, &hi, at(msec(100)), at(msec(130))) // sent 30 ms late
	c.Sent(2, &lo, at(msec(200)), at(msec(200)))
	c.Sent(3, &lo, at(msec(1200)), at(msec(1200)))
	c.Sent(4, &lo, at(msec(1300)), at(msec(1300)))
	c.Sent(5, &lo, at(msec(1400)), at(msec(1400)))
	if c.Outstanding() != 6 {
		t.Fatalf("outstanding %d", c.Outstanding())
	}
	if !c.Final(0, at(msec(10)), 200, "", wire.CacheMiss) || !c.Final(1, at(msec(150)), 200, "", wire.CacheHit) {
		t.Fatal("Final of an outstanding request reported no free slot")
	}
	c.Final(1, at(msec(160)), 200, "", wire.CacheHit) // duplicate
	c.Final(2, at(msec(1250)), 200, "", wire.CacheCoalesced)
	c.Final(3, at(msec(1250)), 429, string(wire.CodeQueueFull), "")
	c.Failed(4, at(msec(1300)), "publish_failed")
	c.Final(4, at(msec(1301)), 200, "", wire.CacheMiss)  // after its failure: ignored
	c.Final(99, at(msec(1301)), 200, "", wire.CacheMiss) // unknown: ignored
	c.Backlogged(msec(7))
	if got := c.Counts(); got != (Counts{Sent: 6, Answered: 3, Errors: 2, Inflight: 1, Backlogged: 1}) {
		t.Fatalf("counts %+v", got)
	}
	r := c.Report(at(msec(2000)))
	c.Final(5, at(msec(2001)), 200, "", wire.CacheMiss) // after the report: ignored

	if r.Sent != 6 || r.Answered != 3 || r.Errors != 2 || r.Lost != 1 || r.Duplicates != 1 {
		t.Fatalf("report %d sent, %d answered, %d errors, %d lost, %d duplicates", r.Sent, r.Answered, r.Errors, r.Lost, r.Duplicates)
	}
	if r.ErrorsByCode["queue_full"] != 1 || r.ErrorsByCode["publish_failed"] != 1 || len(r.ErrorsByCode) != 2 {
		t.Fatalf("errors by code %v", r.ErrorsByCode)
	}
	if r.CacheHits != 1 || r.CacheCoalesced != 1 || r.CacheMisses != 1 || r.CacheHitRate < 0.666 || r.CacheHitRate > 0.667 {
		t.Fatalf("cache %d %d %d %v", r.CacheHits, r.CacheCoalesced, r.CacheMisses, r.CacheHitRate)
	}
	// Request 1 was due at 100 ms and answered at 150 ms: 50 ms, although
	// it left only at 130 ms.
	high := r.ByPriority["high"]
	if high.Answered != 2 || high.MaxMs < 49.9 || high.MaxMs > 50.1 || high.P50Ms < 9.9 || high.P50Ms > 10.1 {
		t.Fatalf("high %+v", high)
	}
	if low := r.ByPriority["low"]; low.Sent != 4 || low.Answered != 1 || low.Errors != 2 || low.Lost != 1 {
		t.Fatalf("low %+v", low)
	}
	if m2 := r.ByModel["m2"]; m2.CacheCoalesced != 1 || m2.MaxMs < 1049 || m2.MaxMs > 1051 {
		t.Fatalf("m2 %+v", m2)
	}
	if r.SendLag.MaxMs < 29.9 || r.SendLag.MaxMs > 30.1 || r.Backlogged != 1 || r.BacklogMaxMs != 7 {
		t.Fatalf("lag %+v backlog %d %v", r.SendLag, r.Backlogged, r.BacklogMaxMs)
	}
	if r.Seconds != 1.4 || r.SendSeconds != 1.4 {
		t.Fatalf("seconds %v, sending %v", r.Seconds, r.SendSeconds)
	}
	want := []Second{
		{T: 0, Sent: 3, Answered: 2, P50Ms: 10, P99Ms: 50},
		{T: 1, Sent: 3, Answered: 1, Errors: 2, P50Ms: 1050, P99Ms: 1050},
	}
	if len(r.Series) != 2 {
		t.Fatalf("series %+v", r.Series)
	}
	for i, s := range r.Series {
		w := want[i]
		if s.T != w.T || s.Sent != w.Sent || s.Answered != w.Answered || s.Errors != w.Errors ||
			s.P50Ms < w.P50Ms*0.999 || s.P50Ms > w.P50Ms*1.001 || s.P99Ms < w.P99Ms*0.999 || s.P99Ms > w.P99Ms*1.001 {
			t.Fatalf("second %d = %+v, want %+v", i, s, w)
		}
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advanceTo(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.After(f.now) {
		f.now = t
	}
}

// TestRunBacklog runs the send loop on a fake clock and transport: when
// MaxInflight requests are outstanding the next send waits, is counted as
// client backlog, and its latency still counts from its intended time.
func TestRunBacklog(t *testing.T) {
	recs := []capture.Record{rec(0, "a", wire.High, "m"), rec(10, "a", wire.High, "m"), rec(20, "a", wire.High, "m"), rec(30, "a", wire.High, "m")}
	cfg := DefaultConfig()
	cfg.MaxInflight, cfg.Drain, cfg.RunID = 2, time.Second, "run1"
	r, err := newReplayer(recs, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: t0}
	sends := make(chan SendEvent, 8)
	r.cfg.OnSend = func(e SendEvent) { sends <- e }
	r.now = clk.Now
	r.sleepUntil = func(_ context.Context, at time.Time) error { clk.advanceTo(at); return nil }
	r.listen = func() (func(), error) { return func() {}, nil }
	var ids []string
	r.publish = func(st Step, id string) error { ids = append(ids, id); return nil }
	answer := func(id string) {
		h := nats.Header{}
		h.Set(wire.HdrStatus, "200")
		h.Set(wire.HdrCache, wire.CacheMiss)
		r.onReply(id, h, nil)
	}
	// The send due at 20 ms finds 2 outstanding; 50 ms later the first is
	// answered. The one due at 30 ms then finds 2 again; 5 ms later the
	// second is answered.
	waits := []time.Duration{msec(50), msec(5)}
	r.blocked = func() {
		clk.advanceTo(clk.Now().Add(waits[0]))
		waits = waits[1:]
		answer(ids[len(ids)-2])
	}
	done := make(chan *Report)
	go func() {
		rep, _ := r.Run(t.Context())
		done <- rep
	}()
	// Answer the last two once they are sent (the drain waits for them).
	var sent []SendEvent
	for range 4 {
		sent = append(sent, <-sends)
	}
	clk.advanceTo(clk.Now().Add(msec(10)))
	answer("run1-2")
	answer("run1-3")
	rep := <-done

	if len(sent) != 4 || ids[3] != "run1-3" {
		t.Fatalf("sent %v", ids)
	}
	// Intended times keep the schedule; actual ones show the wait.
	for i, want := range []time.Duration{0, msec(10), msec(20), msec(30)} {
		if got := sent[i].Intended.Sub(t0); got != want {
			t.Fatalf("send %d intended at %v, want %v", i, got, want)
		}
	}
	if got := sent[2].Actual.Sub(t0); got != msec(70) {
		t.Fatalf("send 2 left at %v, want 70ms", got)
	}
	if rep.Backlogged != 2 || rep.BacklogMaxMs != 50 || rep.Answered != 4 || rep.Lost != 0 {
		t.Fatalf("report: backlogged %d (max %v ms), answered %d, lost %d", rep.Backlogged, rep.BacklogMaxMs, rep.Answered, rep.Lost)
	}
	// Request 0 was answered at 70 ms; requests 1 and 2, due at 10 and
	// 20 ms, at 75 and 85 ms: 65 ms each from their intended times,
	// although request 2 left only at 70 ms.
	if rep.Latency.MaxMs < 69.9 || rep.Latency.MaxMs > 70.1 || rep.Latency.P50Ms < 64.9 || rep.Latency.P50Ms > 65.1 {
		t.Fatalf("latency %+v, want max 70 and p50 65 ms (from the intended times)", rep.Latency)
	}
	if rep.SendLag.MaxMs < 49.9 {
		t.Fatalf("send lag %+v", rep.SendLag)
	}
}
