package replay

import (
	"strconv"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

// Latency histograms count microseconds from 1 µs to 10 minutes with 3
// significant digits; longer latencies are counted as 10 minutes.
const (
	histLowest  = 1
	histHighest = int64(10 * time.Minute / time.Microsecond)
	histDigits  = 3
)

func newHist() *hdr.Histogram { return hdr.New(histLowest, histHighest, histDigits) }

func recordDur(h *hdr.Histogram, d time.Duration) {
	_ = h.RecordValue(min(max(int64(d/time.Microsecond), histLowest), histHighest))
}

// UnknownModel names the model of records whose body did not decode.
const UnknownModel = "(unknown)"

// request states.
const (
	stNone uint8 = iota
	stSent
	stAnswered
	stFailed
)

// request is what the collector keeps per sequence number.
type request struct {
	intended  time.Duration // from the start
	prio, mdl *group
	state     uint8
}

// group accumulates one priority's or one model's numbers.
type group struct {
	sum Summary
	h   *hdr.Histogram
}

func newGroup() *group { return &group{h: newHist()} }

// Counts is a snapshot of a run in progress, for the progress line.
type Counts struct {
	Sent, Answered, Errors, Inflight, Backlogged int64
}

// Collector accounts for every request of a run by its sequence number and
// builds the Report. Every method takes the time of its event from the
// caller, so the collector reads no clock. It is safe for concurrent use.
type Collector struct {
	start time.Time

	// mu guards everything below.
	mu         sync.Mutex
	reqs       []request
	all        *group
	byPrio     map[wire.Priority]*group
	byModel    map[string]*group
	codes      map[string]int64
	dups       int64
	lag        *hdr.Histogram
	lagSum     time.Duration
	backlogged int64
	backlogMax time.Duration
	series     []Second
	cur        *hdr.Histogram // latencies of answers in second curSec
	curSec     int
	lastSend   time.Duration
	lastFinal  time.Duration
	closed     bool
}

// NewCollector returns a collector for a run that started at start: the
// time that step offsets and the series' seconds count from.
func NewCollector(start time.Time) *Collector {
	return &Collector{
		start: start, all: newGroup(), byPrio: map[wire.Priority]*group{}, byModel: map[string]*group{},
		codes: map[string]int64{}, lag: newHist(), cur: newHist(),
	}
}

// Sent records that the request seq for rec, due at intended, was sent
// at actual. It must be called before the request can be answered.
func (c *Collector) Sent(seq int, rec *capture.Record, intended, actual time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || seq < 0 {
		return
	}
	for len(c.reqs) <= seq {
		c.reqs = append(c.reqs, request{})
	}
	r := &c.reqs[seq]
	if r.state != stNone {
		return
	}
	model := rec.Model
	if model == "" {
		model = UnknownModel
	}
	r.intended, r.state = intended.Sub(c.start), stSent
	r.prio, r.mdl = groupFor(c.byPrio, rec.Priority), groupFor(c.byModel, model)
	for _, g := range []*group{c.all, r.prio, r.mdl} {
		g.sum.Sent++
	}
	lag := max(actual.Sub(intended), 0)
	recordDur(c.lag, lag)
	c.lagSum += lag
	at := actual.Sub(c.start)
	c.lastSend = max(c.lastSend, at)
	c.entry(at).Sent++
}

func groupFor[K comparable](m map[K]*group, k K) *group {
	g := m[k]
	if g == nil {
		g = newGroup()
		m[k] = g
	}
	return g
}

// Final records the final reply (the one with Herd-Status) for seq,
// arrived at at: status is Herd-Status, code the error reply's code (for a
// status of 400 or more) and cache the Herd-Cache header. A second final
// reply for seq counts as a duplicate; a reply for an unknown seq, or for
// one whose send failed, is ignored. It reports whether seq was
// outstanding (so a slot is now free).
func (c *Collector) Final(seq int, at time.Time, status int, code, cache string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || seq < 0 || seq >= len(c.reqs) {
		return false
	}
	r := &c.reqs[seq]
	switch r.state {
	case stAnswered:
		c.dups++
		return false
	case stSent:
	default:
		return false
	}
	t := at.Sub(c.start)
	c.lastFinal = max(c.lastFinal, t)
	sec := c.second(t)
	groups := []*group{c.all, r.prio, r.mdl}
	if status >= 400 {
		r.state = stFailed
		if code == "" {
			code = "status_" + strconv.Itoa(status)
		}
		c.codes[code]++
		sec.Errors++
		for _, g := range groups {
			g.sum.Errors++
		}
		return true
	}
	r.state = stAnswered
	lat := t - r.intended
	sec.Answered++
	recordDur(c.cur, lat)
	for _, g := range groups {
		g.sum.Answered++
		switch cache {
		case wire.CacheHit:
			g.sum.CacheHits++
		case wire.CacheCoalesced:
			g.sum.CacheCoalesced++
		default:
			g.sum.CacheMisses++
		}
		recordDur(g.h, lat)
	}
	return true
}

// Failed records that seq could not be sent (JetStream refused the
// publish) at at; code says why (queue_full, publish_failed,
// duplicate_id). It counts as an error. It reports whether seq was
// outstanding.
func (c *Collector) Failed(seq int, at time.Time, code string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || seq < 0 || seq >= len(c.reqs) || c.reqs[seq].state != stSent {
		return false
	}
	r := &c.reqs[seq]
	r.state = stFailed
	c.codes[code]++
	t := at.Sub(c.start)
	c.lastFinal = max(c.lastFinal, t)
	c.second(t).Errors++
	for _, g := range []*group{c.all, r.prio, r.mdl} {
		g.sum.Errors++
	}
	return true
}

// Backlogged records that a send waited wait for a free slot because the
// bound on outstanding requests was reached.
func (c *Collector) Backlogged(wait time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.backlogged++
	c.backlogMax = max(c.backlogMax, wait)
}

// Outstanding returns how many requests were sent and have no final
// outcome yet.
func (c *Collector) Outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.all.sum
	return int(s.Sent - s.Answered - s.Errors)
}

// Counts returns the run's numbers so far.
func (c *Collector) Counts() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.all.sum
	return Counts{Sent: s.Sent, Answered: s.Answered, Errors: s.Errors, Inflight: s.Sent - s.Answered - s.Errors, Backlogged: c.backlogged}
}

// entry returns the series entry for offset t. The caller holds mu.
func (c *Collector) entry(t time.Duration) *Second {
	s := max(int(t/time.Second), 0)
	for len(c.series) <= s {
		c.series = append(c.series, Second{T: len(c.series)})
	}
	return &c.series[s]
}

// second returns the series entry for a final outcome at offset t,
// closing the per-second latency histogram when t is in a later second
// than the outcomes before (outcomes arrive in time order, give or take
// a few microseconds at a second's edge). The caller holds mu.
func (c *Collector) second(t time.Duration) *Second {
	e := c.entry(t)
	if e.T > c.curSec {
		c.closeSecond()
		c.curSec = e.T
	}
	return e
}

// closeSecond writes the current second's percentiles. The caller holds mu.
func (c *Collector) closeSecond() {
	if c.cur.TotalCount() > 0 && c.curSec < len(c.series) {
		c.series[c.curSec].P50Ms = usToMs(c.cur.ValueAtQuantile(50))
		c.series[c.curSec].P99Ms = usToMs(c.cur.ValueAtQuantile(99))
	}
	c.cur.Reset()
}

// Report ends the run at end and returns its report (without Params):
// requests still outstanding are lost. Events after Report are ignored.
func (c *Collector) Report(end time.Time) *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.closeSecond()
	for i := range c.reqs {
		if r := &c.reqs[i]; r.state == stSent {
			for _, g := range []*group{c.all, r.prio, r.mdl} {
				g.sum.Lost++
			}
		}
	}
	s := c.all.sum
	rep := &Report{
		Started:     c.start,
		Seconds:     max(c.lastFinal, c.lastSend).Seconds(),
		SendSeconds: c.lastSend.Seconds(),
		Sent:        s.Sent, Answered: s.Answered, Errors: s.Errors, Lost: s.Lost, Duplicates: c.dups,
		ErrorsByCode:   map[string]int64{},
		CacheHits:      s.CacheHits,
		CacheCoalesced: s.CacheCoalesced,
		CacheMisses:    s.CacheMisses,
		Backlogged:     c.backlogged,
		BacklogMaxMs:   durMs(c.backlogMax),
		Latency:        c.all.summary(),
		ByPriority:     map[string]*Summary{},
		ByModel:        map[string]*Summary{},
		Series:         append([]Second(nil), c.series...),
	}
	if end.Sub(c.start) > 0 && rep.Seconds == 0 {
		rep.Seconds = end.Sub(c.start).Seconds()
	}
	if c.lastFinal > 0 {
		rep.Throughput = float64(s.Answered) / c.lastFinal.Seconds()
	}
	if s.Answered > 0 {
		rep.CacheHitRate = float64(s.CacheHits+s.CacheCoalesced) / float64(s.Answered)
	}
	for k, v := range c.codes {
		rep.ErrorsByCode[k] = v
	}
	if n := c.lag.TotalCount(); n > 0 {
		rep.SendLag = Lag{
			MeanMs: durMs(c.lagSum / time.Duration(n)),
			P50Ms:  usToMs(c.lag.ValueAtQuantile(50)),
			P99Ms:  usToMs(c.lag.ValueAtQuantile(99)),
			MaxMs:  usToMs(c.lag.Max()),
		}
	}
	for p, g := range c.byPrio {
		rep.ByPriority[string(p)] = g.summary()
	}
	for m, g := range c.byModel {
		rep.ByModel[m] = g.summary()
	}
	return rep
}

// summary returns the group's counts and latency percentiles, with the
// histogram encoded. The caller holds the collector's mu.
func (g *group) summary() *Summary {
	s := g.sum
	s.fill(g.h)
	return &s
}

func usToMs(us int64) float64 { return float64(us) / 1000 }

func durMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
