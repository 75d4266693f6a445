package replay

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress draws a replay's progress: on a terminal one line redrawn at
// most 4 times a second, otherwise a plain line every second (for logs).
type Progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	// total is the number of sends planned, -1 when unbounded.
	total int
}

// NewProgress returns a progress display on w for a run of total sends
// (-1: unbounded). It redraws in place when w is a terminal.
func NewProgress(w io.Writer, total int) *Progress {
	p := &Progress{w: w, tty: isTerminal(w), every: time.Second, total: total}
	if p.tty {
		p.every = 250 * time.Millisecond
	}
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Line returns the progress line for a run elapsed into, with counts c,
// in phase ("sending" or "draining").
func (p *Progress) Line(elapsed time.Duration, phase string, c Counts) string {
	var b strings.Builder
	sent := fmt.Sprintf("%d", c.Sent)
	if p.total >= 0 {
		sent += fmt.Sprintf("/%d", p.total)
		if p.tty {
			const width = 24
			frac := 1.0
			if p.total > 0 {
				frac = min(float64(c.Sent)/float64(p.total), 1)
			}
			n := int(frac * width)
			fmt.Fprintf(&b, "[%s%s] %3.0f%% ", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac)
		}
	}
	fmt.Fprintf(&b, "%6.1fs %s  sent %s  answered %d  errors %d  in flight %d",
		elapsed.Seconds(), phase, sent, c.Answered, c.Errors, c.Inflight)
	if c.Backlogged > 0 {
		fmt.Fprintf(&b, "  backlog %d", c.Backlogged)
	}
	return b.String()
}

// draw writes one line.
func (p *Progress) draw(line string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// run redraws from state until ctx ends, then draws the last line. It
// blocks.
func (p *Progress) run(ctx context.Context, state func() (time.Duration, string, Counts)) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.draw(p.Line(state()))
			if p.tty {
				fmt.Fprintln(p.w)
			}
			return
		case <-t.C:
			p.draw(p.Line(state()))
		}
	}
}
