package warm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

// ErrBadConfig is wrapped by the error Run returns for a setting that
// cannot work.
var ErrBadConfig = errors.New("bad warm configuration")

// Config is how Run sends.
type Config struct {
	// Priority is the priority the requests are sent at. Default low, so
	// that live traffic goes first.
	Priority wire.Priority
	// Concurrency is how many requests are outstanding at once. Default 2.
	Concurrency int
	// Timeout bounds one request, its wait in the queue included; one
	// that passes it counts as failed ("timeout"). Default 10m.
	Timeout time.Duration
	// Progress, when set, receives a progress line: redrawn in place on
	// a terminal, else one line a second.
	Progress io.Writer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Priority: wire.Low, Concurrency: 2, Timeout: 10 * time.Minute}
}

// Validate returns an error wrapping ErrBadConfig for a setting that
// cannot work.
func (c Config) Validate() error {
	switch {
	case !c.Priority.Valid():
		return fmt.Errorf("%w: priority %q is not high, normal or low", ErrBadConfig, c.Priority)
	case c.Concurrency < 1:
		return fmt.Errorf("%w: concurrency must be at least 1, not %d", ErrBadConfig, c.Concurrency)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout must be positive, not %v", ErrBadConfig, c.Timeout)
	}
	return nil
}

// Report is what a warm run did and cost.
type Report struct {
	// Records is the records read.
	Records int `json:"records"`
	// Sent is the requests sent: the reproducible ones, once each.
	Sent int `json:"sent"`
	// Added is the answers Ollama ran and herd stored (Herd-Cache: miss).
	Added int `json:"added"`
	// Cached is the requests answered from the cache (hit) or by an
	// identical request running anyway (coalesced): already warm.
	Cached int `json:"cached"`
	// Failed counts the error answers (and timeouts) by code.
	Failed map[string]int `json:"failed,omitempty"`
	// Skipped counts the records not sent, by reason: not_reproducible
	// (temperature above 0 without a seed: herd does not cache it),
	// streaming, cache_off (Herd-Cache: off), repeat (the same agent,
	// body and cache TTL as an earlier record), invalid (the body does
	// not decode).
	Skipped map[string]int `json:"skipped,omitempty"`
	// OllamaSeconds is the sum of the added answers' total_duration.
	OllamaSeconds float64 `json:"ollama_seconds"`
	// PromptTokens and EvalTokens are the added answers' token counts.
	PromptTokens int64 `json:"prompt_tokens"`
	EvalTokens   int64 `json:"eval_tokens"`
	// Seconds is how long the run took.
	Seconds float64 `json:"seconds"`
}

// Skip reasons, the keys of Report.Skipped.
const (
	SkipNotReproducible = "not_reproducible"
	SkipStreaming       = "streaming"
	SkipCacheOff        = "cache_off"
	SkipRepeat          = "repeat"
	SkipInvalid         = "invalid"
)

// Select returns the records of recs worth warming, in order, and a
// report with Records and Skipped filled in. It does no I/O.
func Select(recs []capture.Record) ([]capture.Record, *Report) {
	rep := &Report{Records: len(recs), Skipped: map[string]int{}, Failed: map[string]int{}}
	seen := map[string]bool{}
	var out []capture.Record
	for _, rec := range recs {
		if rec.Raw {
			rep.Skipped[SkipInvalid]++
			continue
		}
		r, err := request.Decode(rec.Payload(), request.Limits{})
		switch {
		case err != nil:
			rep.Skipped[SkipInvalid]++
			continue
		case strings.EqualFold(rec.Headers[wire.HdrCache], wire.CacheOff):
			rep.Skipped[SkipCacheOff]++
			continue
		case r.Stream:
			rep.Skipped[SkipStreaming]++
			continue
		case !r.Reproducible():
			rep.Skipped[SkipNotReproducible]++
			continue
		}
		key := rec.Agent + "\x00" + rec.Headers[wire.HdrCacheTTL] + "\x00" + string(compact(rec.Payload()))
		if seen[key] {
			rep.Skipped[SkipRepeat]++
			continue
		}
		seen[key] = true
		out = append(out, rec)
	}
	return out, rep
}

// compact removes insignificant white space from a JSON body.
func compact(b []byte) []byte {
	var m json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// Run warms the cache with the records of recs that Select keeps, sending
// each on herd.ask.<cfg.Priority>.<its agent> with its cache TTL, at most
// cfg.Concurrency at once, and returns the report. It blocks until every
// request is answered or timed out; when ctx ends it stops sending, waits
// for the outstanding ones (within cfg.Timeout) and returns the report so
// far with ctx's error.
func Run(ctx context.Context, nc *nats.Conn, recs []capture.Record, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	todo, rep := Select(recs)
	start := time.Now()
	var (
		mu       sync.Mutex // guards rep and inflight
		inflight int
		wg       sync.WaitGroup
	)
	slots := make(chan struct{}, cfg.Concurrency)
	stopProgress := func() {}
	if cfg.Progress != nil {
		p := newProgress(cfg.Progress, len(todo))
		pctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.run(pctx, func() string {
				mu.Lock()
				defer mu.Unlock()
				return p.line(time.Since(start), rep, inflight)
			})
		}()
		stopProgress = func() { cancel(); <-done }
	}
	var err error
	for _, rec := range todo {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case slots <- struct{}{}:
		}
		if err != nil {
			break
		}
		mu.Lock()
		rep.Sent++
		inflight++
		mu.Unlock()
		wg.Go(func() {
			defer func() { <-slots }()
			o := ask(nc, rec, cfg)
			mu.Lock()
			defer mu.Unlock()
			inflight--
			o.add(rep)
		})
	}
	wg.Wait()
	rep.Seconds = time.Since(start).Seconds()
	stopProgress()
	return rep, err
}

// outcome is what one request's answer says.
type outcome struct {
	cache string
	code  string // empty for a 200
	// the answer's figures, from Ollama's JSON
	totalDuration          time.Duration
	promptTokens, evalToks int64
}

// add counts o in rep.
func (o outcome) add(rep *Report) {
	switch {
	case o.code != "":
		rep.Failed[o.code]++
	case o.cache == wire.CacheHit || o.cache == wire.CacheCoalesced:
		rep.Cached++
	default:
		rep.Added++
		rep.OllamaSeconds += o.totalDuration.Seconds()
		rep.PromptTokens += o.promptTokens
		rep.EvalTokens += o.evalToks
	}
}

// figures are the cost fields of an Ollama answer (generate, chat, embed).
type figures struct {
	TotalDuration   int64 `json:"total_duration"`
	PromptEvalCount int64 `json:"prompt_eval_count"`
	EvalCount       int64 `json:"eval_count"`
}

// ask sends rec through the ask door and reads its answer. It does not
// run on the caller's context: a request sent is awaited (within
// cfg.Timeout), so that its outcome is counted.
func ask(nc *nats.Conn, rec capture.Record, cfg Config) outcome {
	m := nats.NewMsg(wire.AskSubject(cfg.Priority, rec.Agent))
	m.Data = rec.Payload()
	if ttl := rec.Headers[wire.HdrCacheTTL]; ttl != "" {
		m.Header.Set(wire.HdrCacheTTL, ttl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	reply, err := nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return outcome{code: "timeout"}
	case errors.Is(err, nats.ErrNoResponders):
		return outcome{code: "no_responders"}
	case err != nil:
		return outcome{code: "request_failed"}
	}
	status, err := strconv.Atoi(reply.Header.Get(wire.HdrStatus))
	if err != nil {
		status = 500
	}
	if status >= 400 {
		var eb wire.ErrorBody
		if json.Unmarshal(reply.Data, &eb) != nil || eb.Code == "" {
			return outcome{code: strconv.Itoa(status)}
		}
		return outcome{code: string(eb.Code)}
	}
	o := outcome{cache: reply.Header.Get(wire.HdrCache)}
	var f figures
	if json.Unmarshal(reply.Data, &f) == nil {
		o.totalDuration, o.promptTokens, o.evalToks = time.Duration(f.TotalDuration), f.PromptEvalCount, f.EvalCount
	}
	return o
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "warmed in %v: %d records, %d sent, %d entries added, %d already cached, %d failed\n",
		seconds(r.Seconds), r.Records, r.Sent, r.Added, r.Cached, sum(r.Failed))
	fmt.Fprintf(&b, "cost: %v of Ollama time, %d prompt tokens, %d generated tokens\n", seconds(r.OllamaSeconds), r.PromptTokens, r.EvalTokens)
	if len(r.Skipped) > 0 {
		fmt.Fprintf(&b, "skipped: %s\n", counts(r.Skipped))
	}
	if len(r.Failed) > 0 {
		fmt.Fprintf(&b, "failed: %s\n", counts(r.Failed))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// seconds returns s seconds as a duration rounded for reading.
func seconds(s float64) time.Duration {
	d := time.Duration(s * float64(time.Second))
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// counts formats m as "a 1, b 2" in key order.
func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
