package health

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/format"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// Level is how well something is: OK, Degraded or Down. Levels are
// ordered; a report's level is the worst of its checks'. A Level is also
// `herd health`'s exit code.
type Level int

// The levels, best first.
const (
	// OK: working as it should.
	OK Level = iota
	// Degraded: serving, but something needs attention (a queue lagging,
	// a breaker open, no live worker, an Ollama endpoint failing).
	Degraded
	// Down: herd cannot serve: NATS unreachable, JetStream off, or a
	// stream or bucket missing.
	Down
)

// String returns "ok", "degraded" or "down".
func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Degraded:
		return "degraded"
	}
	return "down"
}

// Tag returns the level as printed at the start of a check line: OK,
// WARN or FAIL.
func (l Level) Tag() string {
	switch l {
	case OK:
		return "OK"
	case Degraded:
		return "WARN"
	}
	return "FAIL"
}

// MarshalText encodes the level as its String.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText decodes "ok", "degraded" or "down".
func (l *Level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ok":
		*l = OK
	case "degraded":
		*l = Degraded
	case "down":
		*l = Down
	default:
		return fmt.Errorf("level %q is not ok, degraded or down", b)
	}
	return nil
}

// Check is the verdict on one thing.
type Check struct {
	// Name says what was checked ("nats", "stream HERD_REQ", ...).
	Name   string `json:"name"`
	Status Level  `json:"status"`
	// Detail is a short human explanation.
	Detail string `json:"detail"`
}

// Report is the result of Evaluate.
type Report struct {
	// Status is the worst level among Checks.
	Status Level     `json:"status"`
	At     time.Time `json:"at"`
	URL    string    `json:"url"`
	Checks []Check   `json:"checks"`
	// Snapshot is what the checks were made on.
	Snapshot *Snapshot `json:"snapshot"`
}

// Thresholds are the limits above which a check reports Degraded. The
// zero value is not useful; start from DefaultThresholds.
type Thresholds struct {
	// MaxPending is the most undelivered messages a consumer may have
	// (its lag). Default 1000.
	MaxPending uint64
	// AckPendingRatio is the share of a consumer's max_ack_pending above
	// which it counts as saturated. Default 0.9.
	AckPendingRatio float64
	// MaxRedelivered is the most redelivered, unacknowledged messages a
	// consumer may have. Default 10.
	MaxRedelivered int
	// MaxDLQ is the most dead letters HERD_DLQ may hold before it counts,
	// if one arrived within DLQWindow. Default 0.
	MaxDLQ uint64
	// DLQWindow is how recent the newest dead letter must be to degrade.
	// Default 1h.
	DLQWindow time.Duration
	// WorkerStaleAfter is how old a worker's heartbeat may be for it to
	// count as live (as dispatcher.worker_stale_after). Default 30s.
	WorkerStaleAfter time.Duration
}

// DefaultThresholds returns the defaults documented on Thresholds.
func DefaultThresholds() Thresholds {
	return Thresholds{
		MaxPending:       1000,
		AckPendingRatio:  0.9,
		MaxRedelivered:   10,
		DLQWindow:        time.Hour,
		WorkerStaleAfter: 30 * time.Second,
	}
}

// Evaluate judges a snapshot. It is pure: the time it judges ages against
// is s.At.
func Evaluate(s *Snapshot, th Thresholds) *Report {
	r := &Report{At: s.At, URL: s.URL, Snapshot: s}
	add := func(name string, l Level, format string, args ...any) {
		r.Checks = append(r.Checks, Check{Name: name, Status: l, Detail: fmt.Sprintf(format, args...)})
	}
	defer func() {
		for _, c := range r.Checks {
			r.Status = max(r.Status, c.Status)
		}
	}()
	if s.ConnectError != "" {
		add("nats", Down, "unreachable at %s: %s", s.URL, s.ConnectError)
		evalOllama(s, add)
		return r
	}
	add("nats", OK, "connected to %s", s.URL)
	if s.JetStreamError != "" {
		add("jetstream", Down, "%s", s.JetStreamError)
		evalOllama(s, add)
		return r
	}
	add("jetstream", OK, "enabled")
	for _, st := range s.Streams {
		name := "stream " + st.Name
		switch {
		case st.Missing:
			add(name, Down, "missing: run herd up or a herd service to create it")
		case st.Error != "":
			add(name, Degraded, "cannot read: %s", st.Error)
		default:
			add(name, OK, "%d messages, %s", st.Msgs, format.IEC(st.Bytes))
		}
	}
	for _, b := range s.Buckets {
		name := "bucket " + b.Name
		switch {
		case b.Missing:
			add(name, Down, "missing: run herd up or a herd service to create it")
		case b.Error != "":
			add(name, Degraded, "cannot read: %s", b.Error)
		default:
			add(name, OK, "%d values, %s", b.Values, format.IEC(b.Bytes))
		}
	}
	for _, c := range s.Consumers {
		l, detail := consumerLevel(c, s.At, th)
		add("consumer "+c.Stream+"/"+c.Name, l, "%s", detail)
	}
	evalDLQ(s, th, add)
	evalWorkers(s, th, add)
	evalBreakers(s, add)
	evalLevels(s, add)
	evalOllama(s, add)
	return r
}

type addFunc func(name string, l Level, format string, args ...any)

func consumerLevel(c Consumer, now time.Time, th Thresholds) (Level, string) {
	switch {
	case c.Missing:
		return Degraded, "missing: its dispatchers or workers cannot pull"
	case c.Error != "":
		return Degraded, "cannot read: " + c.Error
	}
	detail := fmt.Sprintf("pending %d, ack pending %d, redelivered %d", c.Pending, c.AckPending, c.Redelivered)
	if !c.Oldest.IsZero() {
		detail += ", oldest " + age(now.Sub(c.Oldest))
	}
	var why []string
	if c.Pending > th.MaxPending {
		why = append(why, fmt.Sprintf("lag above %d", th.MaxPending))
	}
	if c.MaxAckPending > 0 && float64(c.AckPending) >= th.AckPendingRatio*float64(c.MaxAckPending) {
		why = append(why, fmt.Sprintf("ack pending near its limit %d", c.MaxAckPending))
	}
	if c.Redelivered > th.MaxRedelivered {
		why = append(why, fmt.Sprintf("redeliveries above %d", th.MaxRedelivered))
	}
	if len(why) > 0 {
		return Degraded, detail + ": " + strings.Join(why, ", ")
	}
	return OK, detail
}

func evalDLQ(s *Snapshot, th Thresholds, add addFunc) {
	i := slices.IndexFunc(s.Streams, func(st Stream) bool { return st.Name == wire.StreamDLQ })
	if i < 0 || s.Streams[i].Missing || s.Streams[i].Error != "" {
		return // the stream check said so
	}
	st := s.Streams[i]
	if st.Msgs == 0 {
		add("dead letters", OK, "none")
		return
	}
	detail := fmt.Sprintf("%d in %s, newest %s", st.Msgs, wire.StreamDLQ, age(s.At.Sub(st.LastTime)))
	if st.Msgs > th.MaxDLQ && s.At.Sub(st.LastTime) <= th.DLQWindow {
		add("dead letters", Degraded, "%s: requests failed within %s", detail, th.DLQWindow)
		return
	}
	add("dead letters", OK, "%s", detail)
}

// Live returns the registrations whose heartbeat is within staleAfter of
// now.
func Live(workers []registry.Registration, now time.Time, staleAfter time.Duration) []registry.Registration {
	var out []registry.Registration
	for _, w := range workers {
		if now.Sub(w.At) <= staleAfter {
			out = append(out, w)
		}
	}
	return out
}

func evalWorkers(s *Snapshot, th Thresholds, add addFunc) {
	if s.ControlError != "" {
		add("workers", Degraded, "cannot read registrations: %s", s.ControlError)
		return
	}
	live := Live(s.Workers, s.At, th.WorkerStaleAfter)
	stale := len(s.Workers) - len(live)
	if len(live) == 0 {
		add("workers", Degraded, "no live worker (%d stale): requests wait until one registers", stale)
		return
	}
	var parts []string
	for _, w := range live {
		parts = append(parts, fmt.Sprintf("%s (%s)", w.ID, strings.Join(Models(w), ", ")))
	}
	detail := fmt.Sprintf("%d live: %s", len(live), strings.Join(parts, "; "))
	if stale > 0 {
		detail += fmt.Sprintf("; %d stale", stale)
	}
	add("workers", OK, "%s", detail)
}

// Models returns a registration's models, sorted.
func Models(r registry.Registration) []string {
	out := make([]string, 0, len(r.Models))
	for m := range r.Models {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func evalBreakers(s *Snapshot, add addFunc) {
	if s.ControlError != "" {
		return // the workers check said so
	}
	var open, half []string
	for _, b := range s.Breakers {
		switch b.State {
		case control.Open:
			d := b.Model
			if b.Reason != "" {
				d += " (" + b.Reason + ")"
			}
			if b.Fallback != "" {
				d += " -> " + b.Fallback
			}
			open = append(open, d)
		case control.HalfOpen:
			half = append(half, b.Model)
		}
	}
	switch {
	case len(open) > 0:
		d := "open: " + strings.Join(open, "; ")
		if len(half) > 0 {
			d += "; half-open: " + strings.Join(half, ", ")
		}
		add("breakers", Degraded, "%s", d)
	case len(half) > 0:
		add("breakers", OK, "half-open (probing): %s", strings.Join(half, ", "))
	default:
		add("breakers", OK, "%d models, none open", len(s.Breakers))
	}
}

func evalOllama(s *Snapshot, add addFunc) {
	for _, o := range s.Ollama {
		name := "ollama " + o.URL
		switch {
		case o.Error != "":
			add(name, Degraded, "%s", o.Error)
		case len(o.Models) == 0:
			add(name, Degraded, "version %s, no models pulled", o.Version)
		default:
			add(name, OK, "version %s, models: %s", o.Version, strings.Join(o.Models, ", "))
		}
	}
}

// age formats a duration as a short age ("3s ago", "2m10s ago").
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String() + " ago"
	case d < time.Hour:
		return d.Round(time.Second).String() + " ago"
	}
	return d.Round(time.Minute).String() + " ago"
}
