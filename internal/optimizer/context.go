package optimizer

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
)

// ctxSample is one answer's prompt size and the window it ran in.
type ctxSample struct {
	at        time.Time
	prompt    int
	numCtx    int
	truncated bool
}

// contexts chooses each model's num_ctx from the prompt sizes of its
// answers (policy.ContextSizer) and applies the choice through
// herd_control.
type contexts struct {
	sizer *policy.ContextSizer
	keep  time.Duration
	// mu guards samples.
	mu      sync.Mutex
	samples map[string][]ctxSample
}

func newContexts(cfg policy.ContextConfig, keep time.Duration) *contexts {
	return &contexts{sizer: policy.NewContextSizer(cfg), keep: keep, samples: map[string][]ctxSample{}}
}

// observe records a worker's answer.
func (c *contexts) observe(e events.Request, now time.Time) {
	if e.Dispatcher || e.Status != 200 || e.PromptTok <= 0 || e.NumCtx <= 0 || e.Op == "embed" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples[e.Model] = append(c.samples[e.Model], ctxSample{at: now, prompt: e.PromptTok, numCtx: e.NumCtx, truncated: e.Truncated})
}

// decide evaluates every model with samples at now and returns the
// changed choices. Only answers that ran in the model's current window
// count, so a raise is not repeated for truncations it already fixed.
func (c *contexts) decide(now time.Time) []policy.Decision[int] {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []policy.Decision[int]
	for model, ss := range c.samples {
		keep := ss[:0]
		for _, s := range ss {
			if now.Sub(s.at) <= c.keep {
				keep = append(keep, s)
			}
		}
		c.samples[model] = keep
		if len(keep) == 0 {
			delete(c.samples, model)
			continue
		}
		current := keep[len(keep)-1].numCtx
		in := policy.ContextInput{Current: current}
		for _, s := range keep {
			if s.numCtx != current {
				continue
			}
			in.PromptTokens = append(in.PromptTokens, s.prompt)
			if s.truncated {
				in.Truncated++
			}
		}
		d := c.sizer.Evaluate(now, model, in)
		if d.Changed && d.Value != current {
			out = append(out, d)
		}
	}
	return out
}

// NumCtxEventSubject returns the subject a num_ctx decision is announced
// on: herd.events.num_ctx.<encoded model>.
func NumCtxEventSubject(model string) string {
	return wire.EventsPrefix + ".num_ctx." + wire.EncodeModel(model)
}

// applyContexts writes num_ctx decisions to herd_control and announces
// them.
func (s *Service) applyContexts(ds []policy.Decision[int]) {
	for _, d := range ds {
		n := control.NumCtx{Model: d.Model, NumCtx: d.Value, At: s.now(), Reason: d.Reason, Numbers: d.Numbers}
		data := n.Marshal()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.control.Put(ctx, control.NumCtxKey(d.Model), data)
		cancel()
		if err != nil {
			s.m.applyErrors.Inc()
			s.log.Error("write num_ctx decision", zap.String("model", d.Model), zap.Error(err))
			continue
		}
		_ = s.nc.Publish(NumCtxEventSubject(d.Model), data)
		s.m.decisions.WithLabelValues("num_ctx", strings.ToLower("changed")).Inc()
		s.log.Info("num_ctx decision", zap.String("model", d.Model), zap.Int("num_ctx", d.Value), zap.String("reason", d.Reason))
	}
}
