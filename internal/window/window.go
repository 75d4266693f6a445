package window

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sutazai/herd/internal/wire"
)

// Histogram ranges. Larger values are recorded as the maximum.
const (
	maxLatencyMicros = int64(10 * time.Minute / time.Microsecond)
	maxPromptTokens  = int64(2_000_000)
)

// TruncationMargin is how close to num_ctx a prompt must come to count as
// truncated: PromptTokens >= NumCtx - TruncationMargin (the worker's rule;
// Ollama keeps a few tokens of the window for the answer).
const TruncationMargin = 4

// Config sizes the windows.
type Config struct {
	// Window is how far back statistics reach. Default 60s.
	Window time.Duration `koanf:"window"`
	// Buckets is how many slices the window is kept in; a query covers
	// between Window-Window/Buckets and Window. Default 12 (5s slices).
	Buckets int `koanf:"buckets"`
	// SignificantFigures is the precision of the HDR histograms, 1 to 5.
	// Default 2 (quantiles within 1%); see the package doc for memory.
	SignificantFigures int `koanf:"significant_figures"`
	// Retention is how long a key, model or queue gauge with no news is
	// remembered (last arrival, gap average, gauge) before Advance forgets
	// it. At least Window. Default 1h.
	Retention time.Duration `koanf:"retention"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Window: time.Minute, Buckets: 12, SignificantFigures: 2, Retention: time.Hour}
}

// Validate returns an error wrapping ErrInvalidConfig for a setting that
// cannot work.
func (c Config) Validate() error {
	switch {
	case c.Buckets < 1 || c.Buckets > 3600:
		return fmt.Errorf("%w: buckets must be 1 to 3600, not %d", ErrInvalidConfig, c.Buckets)
	case c.Window < time.Duration(c.Buckets)*time.Millisecond:
		return fmt.Errorf("%w: window %v must be at least 1ms per bucket", ErrInvalidConfig, c.Window)
	case c.SignificantFigures < 1 || c.SignificantFigures > 5:
		return fmt.Errorf("%w: significant_figures must be 1 to 5, not %d", ErrInvalidConfig, c.SignificantFigures)
	case c.Retention < c.Window:
		return fmt.Errorf("%w: retention %v must be at least the window %v", ErrInvalidConfig, c.Retention, c.Window)
	}
	return nil
}

// Key names a series. In queries an empty Model or Priority matches every
// model or priority.
type Key struct {
	Model    string
	Priority wire.Priority
}

// Obs is one request's final outcome, as a metric event reports it.
type Obs struct {
	// At is when the outcome was known; it places the observation in the
	// window and in the inter-arrival gaps.
	At       time.Time
	Model    string
	Priority wire.Priority
	// QueueWait is the time before the request ran; Total the time from
	// arrival to answer; Ollama the time of its Ollama call.
	QueueWait, Total, Ollama time.Duration
	// PromptTokens and EvalTokens are Ollama's prompt_eval_count and
	// eval_count; NumCtx the context window the call ran with (0: unknown).
	PromptTokens, EvalTokens, NumCtx int
	// Status is HTTP-style (0 is taken as 200); Code the error code of a
	// status >= 400.
	Status int
	Code   wire.Code
	// Cache is wire.CacheHit, CacheMiss, CacheCoalesced or empty.
	Cache string
	// FromWorker is true when a worker settled the request (it was handed
	// to the model's backend), false when a dispatcher did.
	FromWorker bool
}

// Rejected reports whether herd refused the request without trying its
// model: code queue_full or breaker_open.
func (o Obs) Rejected() bool {
	return o.Code == wire.CodeQueueFull || o.Code == wire.CodeBreakerOpen
}

// Failed reports whether the observation counts as a failure of its model
// (an error in the error rate, and what a breaker should be fed):
//   - code backend_unavailable or internal (both retryable: the model's
//     backend failed, not the request);
//   - code model_not_found from a worker (herd serves the model but its
//     Ollama does not have it);
//   - any other status >= 500 without a code.
//
// Not failures: rejections (queue_full, breaker_open), deadline_exceeded
// and canceled (the caller's limits), invalid_request and model_not_found
// from a dispatcher (the caller's input).
func (o Obs) Failed() bool {
	switch o.Code {
	case wire.CodeBackendUnavailable, wire.CodeInternal:
		return true
	case wire.CodeModelNotFound:
		return o.FromWorker
	case "":
		return o.Status >= 500
	}
	return false
}

// Ran reports whether the request was answered by an Ollama call: not
// rejected, not failed before its call, and not a cache hit or a coalesced
// answer. A failed call whose Ollama time or tokens are known also ran.
func (o Obs) Ran() bool {
	if o.Rejected() || o.Cache == wire.CacheHit || o.Cache == wire.CacheCoalesced {
		return false
	}
	status := o.Status
	if status == 0 {
		status = 200
	}
	return status < 400 || o.Ollama > 0 || o.PromptTokens > 0
}

// Truncated reports whether the prompt filled the context window:
// PromptTokens >= NumCtx - TruncationMargin, with NumCtx known.
func (o Obs) Truncated() bool { return Truncated(o.PromptTokens, o.NumCtx) }

// Truncated reports whether a prompt of promptTokens filled a window of
// numCtx tokens (numCtx 0: unknown, never): Ollama kept only its end.
func Truncated(promptTokens, numCtx int) bool {
	return numCtx > 0 && promptTokens > 0 && promptTokens >= numCtx-TruncationMargin
}

// Latency is a latency distribution over a window. All zero when empty.
type Latency struct {
	P50, P95, P99, Max, Mean time.Duration
}

// Tokens is a token-count distribution over a window. All zero when empty.
type Tokens struct {
	P50, P95, P99, Max int64
}

// Cache counts cache results over a window.
type Cache struct {
	Hits, Coalesced, Misses int64
	// HitRatio is Hits over Hits+Coalesced+Misses; 0 when there were none.
	HitRatio float64
}

// Stats is what a window says at a time. Rates are per second of Span;
// ratios are 0 when their denominator is.
type Stats struct {
	// Span is the time the window covers: from the start of its oldest
	// slice to now.
	Span time.Duration
	// Count is every observation; Rejected, Errors (Obs.Failed), Expired
	// (deadline_exceeded) and Ran (Obs.Ran) are parts of it.
	Count, Rejected, Errors, Expired, Ran int64
	// Served is Count minus Rejected.
	Served int64
	// ErrorRate is Errors over Served.
	ErrorRate float64
	// Throughput is Served per second.
	Throughput float64
	// Total and QueueWait are over Served observations.
	Total, QueueWait Latency
	// OllamaMean is the mean Ollama time of Ran observations.
	OllamaMean time.Duration
	// EvalTokens and PromptTokens sum the tokens of Ran observations.
	EvalTokens, PromptTokens int64
	// TokensPerSecond is EvalTokens per second of Span (output rate);
	// GenerationRate is EvalTokens per second of Ollama time (call speed).
	TokensPerSecond, GenerationRate float64
	// Prompt is the distribution of prompt tokens of Ran observations with
	// a known count: P95/P99 are what num_ctx must hold.
	Prompt Tokens
	// Truncated counts Ran observations whose prompt filled num_ctx
	// (Obs.Truncated); MaxNumCtx is the largest num_ctx seen.
	Truncated int64
	MaxNumCtx int
	Cache     Cache
	// First and Last are the earliest and latest observation times;
	// MeanGap is (Last-First)/(Count-1), the mean time between
	// observations, 0 with fewer than two.
	First, Last time.Time
	MeanGap     time.Duration
}

// Arrivals is a model's arrival history, kept beyond the window (for
// keep-alive) until Retention passes without news.
type Arrivals struct {
	// Count counts the model's observations since it was first seen.
	Count int64
	// Last is the latest observation time.
	Last time.Time
	// Gap is the moving average (weight 1/4 for the newest) of the gaps
	// between consecutive observations, taken in the order they were
	// observed and skipping observations older than Last; 0 until the
	// second observation.
	Gap time.Duration
}

// Gauge is a queue's state as last set.
type Gauge struct {
	// Depth is the number of requests waiting.
	Depth int
	// Age is how long the oldest has waited: as set, plus the time since
	// At when Depth > 0.
	Age time.Duration
	// At is when the gauge was set.
	At time.Time
}

// Windows holds the windows of every key. It is safe for concurrent use;
// no method blocks other than on its mutex.
type Windows struct {
	cfg   Config
	width time.Duration

	mu sync.Mutex // guards everything below
	// series holds each key's slices.
	series map[Key]*series
	// arrivals holds each model's arrival history.
	arrivals map[string]*arrivalState
	// queues holds the gauges by key.
	queues map[Key]Gauge
	// late counts observations that came after their window had passed.
	late int64
	// scratch histograms for queries.
	qTotal, qQueue, qPrompt *hdr.Histogram
}

type series struct {
	// slices is nil while the key has no observations in its window.
	slices []slice
	// newest is the index of the newest slice observed; last the newest
	// observation time.
	newest int64
	last   time.Time
}

// slice is one Window/Buckets of a key's observations.
type slice struct {
	// idx is the slice's absolute number (time / width); valid when n > 0.
	idx                            int64
	n                              int64
	rejected, errors, expired, ran int64
	hits, coalesced, misses        int64
	evalTokens, promptTokens       int64
	truncated                      int64
	ollama                         time.Duration
	maxNumCtx                      int
	first, last                    time.Time
	// total and queue record latencies in µs of served observations;
	// prompt the prompt tokens of ran ones. Allocated on first use and
	// reset when the slice is reused.
	total, queue, prompt *hdr.Histogram
}

type arrivalState struct {
	Arrivals
}

// New returns empty windows. If cfg is invalid, an error wrapping
// ErrInvalidConfig is returned.
func New(cfg Config) (*Windows, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Windows{
		cfg:      cfg,
		width:    cfg.Window / time.Duration(cfg.Buckets),
		series:   map[Key]*series{},
		arrivals: map[string]*arrivalState{},
		queues:   map[Key]Gauge{},
	}, nil
}

// Config returns the configuration the windows were built with.
func (w *Windows) Config() Config { return w.cfg }

func (w *Windows) latencyHist() *hdr.Histogram {
	return hdr.New(1, maxLatencyMicros, w.cfg.SignificantFigures)
}

func (w *Windows) promptHist() *hdr.Histogram {
	return hdr.New(1, maxPromptTokens, w.cfg.SignificantFigures)
}

// sliceOf returns the absolute slice number of t.
func (w *Windows) sliceOf(t time.Time) int64 {
	n, d := t.UnixNano(), int64(w.width)
	q := n / d
	if n%d < 0 {
		q--
	}
	return q
}

func (w *Windows) sliceStart(idx int64) time.Time {
	return time.Unix(0, idx*int64(w.width))
}

// Observe adds o to its key's window. It returns false, counts o in Late
// and changes nothing else when o has no time or is older than its key's
// window (a slice newer by Buckets or more was already observed).
func (w *Windows) Observe(o Obs) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o.At.IsZero() {
		w.late++
		return false
	}
	k := Key{Model: o.Model, Priority: o.Priority}
	s := w.series[k]
	if s == nil {
		s = &series{}
		w.series[k] = s
	}
	idx := w.sliceOf(o.At)
	if s.slices != nil && idx <= s.newest-int64(w.cfg.Buckets) {
		w.late++
		return false
	}
	if s.slices == nil {
		s.slices = make([]slice, w.cfg.Buckets)
		s.newest = idx
	}
	s.newest = max(s.newest, idx)
	if o.At.After(s.last) {
		s.last = o.At
	}
	b := &s.slices[int(mod(idx, int64(w.cfg.Buckets)))]
	if b.n == 0 || b.idx != idx {
		b.reset(idx)
	}
	w.add(b, o)
	w.arrive(o.Model, o.At)
	return true
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func (b *slice) reset(idx int64) {
	total, queue, prompt := b.total, b.queue, b.prompt
	*b = slice{idx: idx, total: total, queue: queue, prompt: prompt}
	for _, h := range []*hdr.Histogram{total, queue, prompt} {
		if h != nil {
			h.Reset()
		}
	}
}

func (w *Windows) add(b *slice, o Obs) {
	if b.n == 0 || o.At.Before(b.first) {
		b.first = o.At
	}
	if b.n == 0 || o.At.After(b.last) {
		b.last = o.At
	}
	b.n++
	if o.Rejected() {
		b.rejected++
		return
	}
	if o.Failed() {
		b.errors++
	}
	if o.Code == wire.CodeDeadlineExceeded {
		b.expired++
	}
	switch o.Cache {
	case wire.CacheHit:
		b.hits++
	case wire.CacheCoalesced:
		b.coalesced++
	case wire.CacheMiss:
		b.misses++
	}
	if b.total == nil {
		b.total, b.queue = w.latencyHist(), w.latencyHist()
	}
	recordClamped(b.total, o.Total.Microseconds(), maxLatencyMicros)
	recordClamped(b.queue, o.QueueWait.Microseconds(), maxLatencyMicros)
	if !o.Ran() {
		return
	}
	b.ran++
	b.evalTokens += int64(max(o.EvalTokens, 0))
	b.promptTokens += int64(max(o.PromptTokens, 0))
	b.ollama += max(o.Ollama, 0)
	b.maxNumCtx = max(b.maxNumCtx, o.NumCtx)
	if o.Truncated() {
		b.truncated++
	}
	if o.PromptTokens > 0 {
		if b.prompt == nil {
			b.prompt = w.promptHist()
		}
		recordClamped(b.prompt, int64(o.PromptTokens), maxPromptTokens)
	}
}

// recordClamped records v in h, clamped to [0, top]; h's range holds both.
func recordClamped(h *hdr.Histogram, v, top int64) {
	_ = h.RecordValue(min(max(v, 0), top))
}

func (w *Windows) arrive(model string, at time.Time) {
	a := w.arrivals[model]
	if a == nil {
		a = &arrivalState{}
		w.arrivals[model] = a
	}
	a.Count++
	if a.Last.IsZero() {
		a.Last = at
		return
	}
	if !at.After(a.Last) {
		return
	}
	gap := at.Sub(a.Last)
	a.Last = at
	if a.Gap == 0 {
		a.Gap = gap
	} else {
		a.Gap += (gap - a.Gap) / 4
	}
}

// SetQueue sets the gauge of k's queue: depth requests waiting, the
// oldest for age, as of at. Key{Priority: p} is the convention for a
// priority's request queue, and Key{Model, Priority} for a model's batches.
func (w *Windows) SetQueue(k Key, depth int, age time.Duration, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queues[k] = Gauge{Depth: depth, Age: age, At: at}
}

// Queue returns the gauge set for exactly k (empty fields are not
// wildcards here), with its age carried forward to now while requests wait,
// and false when none was set or it was forgotten.
func (w *Windows) Queue(k Key, now time.Time) (Gauge, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g, ok := w.queues[k]
	if ok && g.Depth > 0 && now.After(g.At) {
		g.Age += now.Sub(g.At)
	}
	return g, ok
}

// Arrivals returns model's arrival history, and false when the model was
// never observed or was forgotten.
func (w *Windows) Arrivals(model string) (Arrivals, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a, ok := w.arrivals[model]
	if !ok {
		return Arrivals{}, false
	}
	return a.Arrivals, true
}

// Late counts observations refused by Observe: without a time, or after
// their window had passed.
func (w *Windows) Late() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.late
}

// Keys returns the keys with observations in their window at now, sorted
// by model then priority (high, normal, low).
func (w *Windows) Keys(now time.Time) []Key {
	w.mu.Lock()
	defer w.mu.Unlock()
	lo, hi := w.bounds(now)
	var keys []Key
	for k, s := range w.series {
		for i := range s.slices {
			if b := &s.slices[i]; b.n > 0 && b.idx >= lo && b.idx <= hi {
				keys = append(keys, k)
				break
			}
		}
	}
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Priority.Index(), b.Priority.Index()),
			cmp.Compare(a.Priority, b.Priority))
	})
	return keys
}

// bounds returns the slice numbers a query at now covers.
func (w *Windows) bounds(now time.Time) (lo, hi int64) {
	hi = w.sliceOf(now)
	return hi - int64(w.cfg.Buckets) + 1, hi
}

func matches(q, k Key) bool {
	return (q.Model == "" || q.Model == k.Model) && (q.Priority == "" || q.Priority == k.Priority)
}

// Stats returns the statistics at now of every key that k matches (empty
// Model or Priority match all): Stats(Key{Model: m}, now) is model m over
// all priorities, Stats(Key{}, now) everything. An empty window gives zero
// counts, rates and distributions with Span set.
func (w *Windows) Stats(k Key, now time.Time) Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	lo, hi := w.bounds(now)
	st := Stats{Span: now.Sub(w.sliceStart(lo))}
	if w.qTotal == nil {
		w.qTotal, w.qQueue, w.qPrompt = w.latencyHist(), w.latencyHist(), w.promptHist()
	}
	w.qTotal.Reset()
	w.qQueue.Reset()
	w.qPrompt.Reset()
	var ollama time.Duration
	for sk, s := range w.series {
		if !matches(k, sk) {
			continue
		}
		for i := range s.slices {
			b := &s.slices[i]
			if b.n == 0 || b.idx < lo || b.idx > hi {
				continue
			}
			st.Count += b.n
			st.Rejected += b.rejected
			st.Errors += b.errors
			st.Expired += b.expired
			st.Ran += b.ran
			st.Cache.Hits += b.hits
			st.Cache.Coalesced += b.coalesced
			st.Cache.Misses += b.misses
			st.EvalTokens += b.evalTokens
			st.PromptTokens += b.promptTokens
			st.Truncated += b.truncated
			st.MaxNumCtx = max(st.MaxNumCtx, b.maxNumCtx)
			ollama += b.ollama
			if st.First.IsZero() || b.first.Before(st.First) {
				st.First = b.first
			}
			if b.last.After(st.Last) {
				st.Last = b.last
			}
			if b.total != nil {
				w.qTotal.Merge(b.total)
				w.qQueue.Merge(b.queue)
			}
			if b.prompt != nil {
				w.qPrompt.Merge(b.prompt)
			}
		}
	}
	st.Served = st.Count - st.Rejected
	st.ErrorRate = ratio(st.Errors, st.Served)
	if secs := st.Span.Seconds(); secs > 0 {
		st.Throughput = float64(st.Served) / secs
		st.TokensPerSecond = float64(st.EvalTokens) / secs
	}
	if ollama > 0 {
		st.GenerationRate = float64(st.EvalTokens) / ollama.Seconds()
	}
	if st.Ran > 0 {
		st.OllamaMean = ollama / time.Duration(st.Ran)
	}
	st.Cache.HitRatio = ratio(st.Cache.Hits, st.Cache.Hits+st.Cache.Coalesced+st.Cache.Misses)
	if st.Count >= 2 {
		st.MeanGap = st.Last.Sub(st.First) / time.Duration(st.Count-1)
	}
	st.Total = latency(w.qTotal)
	st.QueueWait = latency(w.qQueue)
	st.Prompt = tokens(w.qPrompt)
	return st
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func latency(h *hdr.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	q := h.ValueAtPercentilesSlice([]float64{50, 95, 99})
	return Latency{
		P50: time.Duration(q[0]) * time.Microsecond, P95: time.Duration(q[1]) * time.Microsecond,
		P99: time.Duration(q[2]) * time.Microsecond, Max: time.Duration(h.Max()) * time.Microsecond,
		Mean: time.Duration(h.Mean() * float64(time.Microsecond)),
	}
}

func tokens(h *hdr.Histogram) Tokens {
	if h.TotalCount() == 0 {
		return Tokens{}
	}
	q := h.ValueAtPercentilesSlice([]float64{50, 95, 99})
	return Tokens{P50: q[0], P95: q[1], P99: q[2], Max: h.Max()}
}

// Advance gives back the memory of keys with no observations in their
// window at now, and forgets keys, models' arrival histories and queue
// gauges with no news for Retention. Queries never need it: expired
// slices are ignored whether or not Advance ran. Call it now and then
// (for example every Window).
func (w *Windows) Advance(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	lo, _ := w.bounds(now)
	for k, s := range w.series {
		if s.slices != nil && s.newest < lo {
			s.slices = nil
		}
		if now.Sub(s.last) > w.cfg.Retention {
			delete(w.series, k)
		}
	}
	for m, a := range w.arrivals {
		if now.Sub(a.Last) > w.cfg.Retention {
			delete(w.arrivals, m)
		}
	}
	for k, g := range w.queues {
		if now.Sub(g.At) > w.cfg.Retention {
			delete(w.queues, k)
		}
	}
}
