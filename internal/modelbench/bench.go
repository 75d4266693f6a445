package modelbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// workerStaleAfter is how old a worker registration may be and still name
// a model to benchmark (the dispatcher's default worker_stale_after).
const workerStaleAfter = 30 * time.Second

// timeoutGrace is how much longer than Config.Timeout the bench waits for
// an answer, so that herd's own 504 arrives first.
const timeoutGrace = 10 * time.Second

// Result is one model's benchmark: what `herd bench` prints, writes with
// --json and stores in HERD_BENCH.
type Result struct {
	// ID identifies the run; the models of one `herd bench` share it.
	ID string `json:"id"`
	// Time is when the model's benchmark started.
	Time  time.Time `json:"time"`
	Model string    `json:"model"`
	// Digest is the model digest the workers registered, when known.
	Digest string `json:"digest,omitempty"`
	// Profile, Requests and Concurrency are the profile's.
	Profile     string `json:"profile"`
	Requests    int    `json:"requests"`
	Concurrency int    `json:"concurrency"`
	Priority    string `json:"priority"`
	// WallMs is the wall time of the measured requests.
	WallMs float64 `json:"wall_ms"`
	// FirstLatencyMs and LoadFirstMs are the latency and load_duration of
	// the first call, sent alone before the measured ones: the load time
	// when the model was not loaded yet. FirstError is its error, if any.
	FirstLatencyMs float64 `json:"first_latency_ms"`
	LoadFirstMs    float64 `json:"load_first_ms"`
	FirstError     string  `json:"first_error,omitempty"`
	Figures
	// Quality is the prompt suite's outcome; nil without quality cases.
	Quality *Quality `json:"quality,omitempty"`
	// Samples are the measured requests in the order they were sent. They
	// are not stored in HERD_BENCH.
	Samples []Sample `json:"samples,omitempty"`
}

// Quality is the outcome of a suite's quality cases for one model.
type Quality struct {
	Cases  int `json:"cases"`
	Passed int `json:"passed"`
	// PassRate is Passed / Cases, from 0 to 1.
	PassRate float64   `json:"pass_rate"`
	Failures []Failure `json:"failures,omitempty"`
}

// Failure is a quality case that did not pass.
type Failure struct {
	Case string `json:"case"`
	// Reasons are the failed checks (or the request's error).
	Reasons []string `json:"reasons"`
	// Answer is the start of the answer, on one line.
	Answer string `json:"answer,omitempty"`
}

// Config configures the benchmark of one model.
type Config struct {
	// Profile is how many requests and how many at once. Default Quick.
	Profile Profile
	// Suite gives the load prompts and quality cases. Default
	// DefaultSuite(): one prompt, no quality cases.
	Suite *Suite
	// Priority of every request. Default normal.
	Priority wire.Priority
	// Timeout is how long herd may take for one request (Herd-Timeout).
	// Default 2m.
	Timeout time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Profile == (Profile{}) {
		c.Profile = Quick
	}
	if err := c.Profile.Validate(); err != nil {
		return c, err
	}
	if c.Suite == nil {
		c.Suite = DefaultSuite()
	}
	if c.Priority == "" {
		c.Priority = wire.Normal
	}
	if !c.Priority.Valid() {
		return c, fmt.Errorf("priority %q is not high, normal or low", c.Priority)
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Timeout < 0 {
		return c, errors.New("timeout must not be negative")
	}
	return c, nil
}

// Runner sends benchmark requests through herd. It is safe for concurrent
// use, but benchmarks of several models at once disturb each other.
type Runner struct {
	hc  *client.Client
	js  jetstream.JetStream
	log *zap.Logger
	// now is the clock for result times (a test seam).
	now func() time.Time
	// progressEvery is how often Run draws a model's progress line while
	// its requests run (a test seam; 1s).
	progressEvery time.Duration
}

// NewRunner returns a runner that sends requests with hc and reads the
// workers' registrations through js. The caller keeps ownership of both.
func NewRunner(hc *client.Client, js jetstream.JetStream, log *zap.Logger) *Runner {
	return &Runner{hc: hc, js: js, log: log.Named("bench"), now: time.Now, progressEvery: time.Second}
}

// Models returns the models that live workers registered in herd_control
// (registrations younger than 30s), with their digests. It blocks until
// JetStream answered or ctx ends.
func (r *Runner) Models(ctx context.Context) (map[string]string, error) {
	kv, err := r.js.KeyValue(ctx, wire.BucketControl)
	if err != nil {
		return nil, fmt.Errorf("bucket %s (is herd running?): %w", wire.BucketControl, err)
	}
	keys, err := kv.ListKeysFiltered(ctx, registry.KeyPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	idx := registry.NewIndex()
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // the worker left meanwhile
			}
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		var reg registry.Registration
		if err := json.Unmarshal(e.Value(), &reg); err != nil {
			r.log.Warn("skipping a worker registration that does not decode", zap.String("key", k), zap.Error(err))
			continue
		}
		idx.Put(reg)
	}
	return idx.Models(r.now(), workerStaleAfter), nil
}

// Bench benchmarks one model: the first call alone, then the profile's
// requests, then the suite's quality cases. Failed requests are counted,
// not returned; the error is ctx's when it ended, or a bad cfg.
func (r *Runner) Bench(ctx context.Context, model string, cfg Config) (*Result, error) {
	return r.bench(ctx, model, cfg, nil)
}

// bench is Bench drawing its progress on w (nil: none) every
// r.progressEvery.
func (r *Runner) bench(ctx context.Context, model string, cfg Config, w io.Writer) (*Result, error) {
	p := startProgress(w, r.progressEvery, model)
	defer p.end()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &Result{
		Time: r.now(), Model: model, Profile: cfg.Profile.Name, Requests: cfg.Profile.Requests,
		Concurrency: cfg.Profile.Concurrency, Priority: string(cfg.Priority),
	}
	load := cfg.Suite.Load
	send := func(ctx context.Context, i int) Sample {
		req := &api.GenerateRequest{Model: model, Prompt: load.Prompts[i%len(load.Prompts)], Options: load.Options}
		return r.generate(ctx, req, cfg)
	}

	first := send(ctx, 0)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.FirstLatencyMs, res.LoadFirstMs = first.LatencyMs, first.LoadMs
	if first.Code != "" {
		res.FirstError = first.Code + ": " + first.Error
	}

	samples := make([]Sample, cfg.Profile.Requests)
	p.begins("requests", cfg.Profile.Requests)
	begin := time.Now()
	parallel(cfg.Profile.Requests, cfg.Profile.Concurrency, func(i int) {
		done := p.call()
		samples[i] = send(ctx, i+1)
		done(samples[i].Code != "")
	})
	wall := time.Since(begin)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.WallMs = ms(wall)
	res.Samples = samples
	res.Figures = Summarize(samples, wall)
	res.LoadMaxMs = max(res.LoadMaxMs, first.LoadMs)

	if len(cfg.Suite.Cases) > 0 {
		p.begins("quality", len(cfg.Suite.Cases))
		res.Quality = r.quality(ctx, model, cfg, p)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// quality runs every case once and checks its answer.
func (r *Runner) quality(ctx context.Context, model string, cfg Config, p *progress) *Quality {
	cases := cfg.Suite.Cases
	failed := make([]*Failure, len(cases))
	parallel(len(cases), cfg.Profile.Concurrency, func(i int) {
		c := &cases[i]
		done := p.call()
		answer, s := r.answer(ctx, model, c, cfg)
		done(s.Code != "")
		var why []string
		if s.Code != "" {
			why = []string{fmt.Sprintf("error %s: %s", s.Code, s.Error)}
		} else {
			why = c.Expect.Check(answer)
		}
		if len(why) > 0 {
			failed[i] = &Failure{Case: c.Name, Reasons: why, Answer: shorten(answer, answerShown)}
		}
	})
	q := &Quality{Cases: len(cases)}
	for _, f := range failed {
		if f == nil {
			q.Passed++
			continue
		}
		q.Failures = append(q.Failures, *f)
	}
	q.PassRate = float64(q.Passed) / float64(q.Cases)
	return q
}

// answer sends a quality case and returns the answer text.
func (r *Runner) answer(ctx context.Context, model string, c *Case, cfg Config) (string, Sample) {
	if g := c.generate(model); g != nil {
		var text string
		s := r.call(ctx, cfg, func(ctx context.Context, opts []client.CallOption) (api.Metrics, *client.Meta, error) {
			resp, meta, err := r.hc.Generate(ctx, g, opts...)
			if err != nil {
				return api.Metrics{}, meta, err
			}
			text = resp.Response
			return resp.Metrics, meta, nil
		})
		return text, s
	}
	var text string
	s := r.call(ctx, cfg, func(ctx context.Context, opts []client.CallOption) (api.Metrics, *client.Meta, error) {
		resp, meta, err := r.hc.Chat(ctx, c.chat(model), opts...)
		if err != nil {
			return api.Metrics{}, meta, err
		}
		text = resp.Message.Content
		return resp.Metrics, meta, nil
	})
	return text, s
}

// generate sends one load request.
func (r *Runner) generate(ctx context.Context, req *api.GenerateRequest, cfg Config) Sample {
	return r.call(ctx, cfg, func(ctx context.Context, opts []client.CallOption) (api.Metrics, *client.Meta, error) {
		resp, meta, err := r.hc.Generate(ctx, req, opts...)
		if err != nil {
			return api.Metrics{}, meta, err
		}
		return resp.Metrics, meta, nil
	})
}

// call times one request with the cache off and turns its outcome into a
// sample.
func (r *Runner) call(ctx context.Context, cfg Config, f func(context.Context, []client.CallOption) (api.Metrics, *client.Meta, error)) Sample {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+timeoutGrace)
	defer cancel()
	opts := []client.CallOption{client.At(cfg.Priority), client.Timeout(cfg.Timeout), client.Cache(wire.CacheOff)}
	begin := time.Now()
	m, meta, err := f(ctx, opts)
	s := Sample{LatencyMs: ms(time.Since(begin))}
	if err != nil {
		s.Code, s.Error = codeOf(err), err.Error()
		var he *client.Error
		if errors.As(err, &he) {
			s.Error = he.Message
		}
		return s
	}
	if meta != nil {
		s.QueueMs = meta.QueueMs
	}
	s.EvalCount, s.EvalMs = m.EvalCount, ms(m.EvalDuration)
	s.PromptEvalCount, s.PromptEvalMs = m.PromptEvalCount, ms(m.PromptEvalDuration)
	s.LoadMs = ms(m.LoadDuration)
	return s
}

// codeOf names a failed request's outcome: herd's code, "timeout" when the
// bench stopped waiting, "client" otherwise.
func codeOf(err error) string {
	var he *client.Error
	switch {
	case errors.As(err, &he) && he.Code != "":
		return string(he.Code)
	case errors.As(err, &he):
		return fmt.Sprintf("status_%d", he.Status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "client"
}

// parallel calls f(0..n-1) with at most c calls at once and returns when
// all returned.
func parallel(n, c int, f func(i int)) {
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	wg.Wait()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
