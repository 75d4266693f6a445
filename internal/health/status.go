package health

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/format"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// WriteStatus writes the one-screen summary of s that `herd status`
// prints: overall health, queues per priority, batches per model,
// workers, breakers, storage, dead letters and capture. It returns the
// writer's first error.
func WriteStatus(w io.Writer, s *Snapshot, th Thresholds) error {
	r := Evaluate(s, th)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("herd %s  %s  %s", r.Status, s.URL, s.At.UTC().Format("2006-01-02 15:04:05Z"))
	for _, c := range r.Checks {
		if c.Status != OK {
			p("  %-4s %s: %s", c.Status.Tag(), c.Name, c.Detail)
		}
	}
	if s.ConnectError != "" || s.JetStreamError != "" {
		return tw.Flush()
	}
	writeQueues(p, s)
	writeWorkers(p, s, th)
	writeBreakers(p, s)
	writeStorage(p, s)
	return tw.Flush()
}

// writeQueues prints the request consumers per priority and the batch
// consumers per model and priority.
func writeQueues(p func(format string, args ...any), s *Snapshot) {
	p("\nQUEUES\tpending\tack pending\tredelivered\toldest")
	for _, c := range s.Consumers {
		if c.Stream == wire.StreamReq {
			p("  %s\t%s", c.Priority, counters(c, s))
		}
	}
	p("\nBATCHES\tpending\tack pending\tredelivered\toldest")
	n := 0
	for _, c := range s.Consumers {
		if c.Stream == wire.StreamBatch {
			n++
			p("  %s %s\t%s", c.Model, c.Priority, counters(c, s))
		}
	}
	if n == 0 {
		p("  none")
	}
}

// writeWorkers prints each registered worker, marking the stale ones.
func writeWorkers(p func(format string, args ...any), s *Snapshot, th Thresholds) {
	live := Live(s.Workers, s.At, th.WorkerStaleAfter)
	p("\nWORKERS\tmodels\tslots\tcpu\theartbeat")
	if s.ControlError != "" {
		p("  n/a\t%s", s.ControlError)
	}
	for _, w := range s.Workers {
		state := ""
		if !slices.ContainsFunc(live, func(l registry.Registration) bool { return l.ID == w.ID }) {
			state = " (stale)"
		}
		p("  %s\t%s\t%d\t%g\t%s%s", w.ID, strings.Join(Models(w), ","), w.Slots, w.CPUBudget, age(s.At.Sub(w.At)), state)
	}
	if len(s.Workers) == 0 && s.ControlError == "" {
		p("  none")
	}
}

// writeBreakers prints each model's breaker: its state (with the fallback
// of an open one), since when, and why.
func writeBreakers(p func(format string, args ...any), s *Snapshot) {
	p("\nBREAKERS\tstate\tsince\treason")
	for _, b := range s.Breakers {
		state := b.State
		if b.State == control.Open && b.Fallback != "" {
			state += " -> " + b.Fallback
		}
		since := "n/a"
		if !b.At.IsZero() {
			since = age(s.At.Sub(b.At))
		}
		p("  %s\t%s\t%s\t%s", b.Model, state, since, b.Reason)
	}
	if len(s.Breakers) == 0 {
		p("  none")
	}
}

// writeStorage prints the cache and results buckets, the dead letters and
// the capture switch.
func writeStorage(p func(format string, args ...any), s *Snapshot) {
	p("\nSTORAGE")
	for _, b := range s.Buckets {
		if b.Name != wire.BucketCache && b.Name != wire.BucketResults {
			continue
		}
		switch {
		case b.Missing:
			p("  %s\tmissing", b.Name)
		case b.Error != "":
			p("  %s\t%s", b.Name, b.Error)
		default:
			p("  %s\t%d values\t%s", b.Name, b.Values, format.IEC(b.Bytes))
		}
	}
	for _, st := range s.Streams {
		if st.Name == wire.StreamDLQ {
			if st.Msgs > 0 {
				p("  dead letters\t%d\tnewest %s", st.Msgs, age(s.At.Sub(st.LastTime)))
			} else {
				p("  dead letters\t0")
			}
		}
	}
	capture := s.Capture
	if capture == "" {
		capture = "not switched (dispatchers follow capture.enabled)"
	}
	p("  capture\t%s", capture)
}

func counters(c Consumer, s *Snapshot) string {
	if c.Missing {
		return "missing"
	}
	if c.Error != "" {
		return c.Error
	}
	oldest := "n/a"
	if !c.Oldest.IsZero() {
		oldest = age(s.At.Sub(c.Oldest))
	} else if c.Pending == 0 && c.AckPending == 0 {
		oldest = "-"
	}
	return fmt.Sprintf("%d\t%d\t%d\t%s", c.Pending, c.AckPending, c.Redelivered, oldest)
}
