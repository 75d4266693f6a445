package modelbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws a model's benchmark while its requests run: on a
// terminal one line redrawn in place, otherwise a plain line every period
// (for logs), as herd replay does.
type progress struct {
	w      io.Writer
	tty    bool
	every  time.Duration
	model  string
	begin  time.Time
	stop   context.CancelFunc
	wg     sync.WaitGroup
	phase  atomic.Pointer[string]
	total  atomic.Int64
	done   atomic.Int64
	failed atomic.Int64
	active atomic.Int64
}

// startProgress starts drawing model's progress on w every period (a
// quarter of it on a terminal) until end is called. A nil w draws
// nothing.
func startProgress(w io.Writer, every time.Duration, model string) *progress {
	p := &progress{w: w, every: every, model: model, begin: time.Now(), stop: func() {}}
	if w == nil || w == io.Discard || every <= 0 {
		return p
	}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, every/4
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	p.wg.Go(func() {
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.draw()
			}
		}
	})
	return p
}

// begins starts a phase of n requests ("requests" or "quality").
func (p *progress) begins(phase string, n int) {
	p.phase.Store(&phase)
	p.total.Store(int64(n))
	p.done.Store(0)
	p.failed.Store(0)
}

// call counts a request of the phase from its start; the returned func
// counts its end, failed or not.
func (p *progress) call() func(failed bool) {
	p.active.Add(1)
	return func(failed bool) {
		p.active.Add(-1)
		p.done.Add(1)
		if failed {
			p.failed.Add(1)
		}
	}
}

// line is the progress line now.
func (p *progress) line() string {
	phase := "first call"
	if ph := p.phase.Load(); ph != nil {
		phase = *ph
	}
	el := time.Since(p.begin)
	done := p.done.Load()
	return fmt.Sprintf("bench %s: %6.1fs %s %d/%d  errors %d  in flight %d  %.1f/s",
		p.model, el.Seconds(), phase, done, p.total.Load(), p.failed.Load(), p.active.Load(), float64(done)/max(el.Seconds(), 1e-3))
}

func (p *progress) draw() {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
		return
	}
	fmt.Fprintln(p.w, p.line())
}

// end stops drawing; on a terminal it ends the redrawn line.
func (p *progress) end() {
	p.stop()
	p.wg.Wait()
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K")
	}
}
