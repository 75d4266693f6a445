package warm

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a warm run's progress as `herd replay` does: on a
// terminal one line redrawn 4 times a second, otherwise a plain line
// every second (for logs).
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	total int
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, every: time.Second, total: total}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 250*time.Millisecond
		}
	}
	return p
}

// line returns the progress line of a run elapsed into; the caller holds
// whatever guards rep.
func (p *progress) line(elapsed time.Duration, rep *Report, inflight int) string {
	var b strings.Builder
	done := rep.Sent - inflight
	if p.tty {
		const width = 24
		frac := 1.0
		if p.total > 0 {
			frac = min(float64(done)/float64(p.total), 1)
		}
		n := int(frac * width)
		fmt.Fprintf(&b, "[%s%s] %3.0f%% ", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac)
	}
	fmt.Fprintf(&b, "%6.1fs warming  done %d/%d  added %d  cached %d  failed %d  in flight %d  ollama %.1fs",
		elapsed.Seconds(), done, p.total, rep.Added, rep.Cached, sum(rep.Failed), inflight, rep.OllamaSeconds)
	return b.String()
}

// run redraws line until ctx ends, then draws the last one. It blocks.
func (p *progress) run(ctx context.Context, line func() string) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.draw(line())
			if p.tty {
				fmt.Fprintln(p.w)
			}
			return
		case <-t.C:
			p.draw(line())
		}
	}
}

func (p *progress) draw(line string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		return
	}
	fmt.Fprintln(p.w, line)
}
