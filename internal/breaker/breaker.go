package breaker

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// numSlices is how many slices the closed-state window is kept in.
const numSlices = 10

// Config tunes every breaker of a Set.
type Config struct {
	// Window is how far back the error rate looks. Default 30s.
	Window time.Duration `koanf:"window"`
	// MinRequests is how many outcomes the window must hold before its
	// error rate can open the breaker. Default 10.
	MinRequests int `koanf:"min_requests"`
	// ErrorRate opens the breaker when the failed share of the window
	// reaches it (>=), in (0, 1]. Default 0.5.
	ErrorRate float64 `koanf:"error_rate"`
	// ConsecutiveFailures opens the breaker when that many outcomes in a
	// row failed, however few; 0 turns the rule off. Default 5.
	ConsecutiveFailures int `koanf:"consecutive_failures"`
	// CoolDown is how long an open breaker rejects everything before it
	// lets probes through. Default 10s.
	CoolDown time.Duration `koanf:"cool_down"`
	// HalfOpenProbes is how many probes may be out at once in half-open,
	// and how many must succeed to close. Default 3.
	HalfOpenProbes int `koanf:"half_open_probes"`
	// ProbeTimeout is how long a probe may go without an outcome before
	// its place goes to another request (a lost probe must not hold the
	// breaker half-open for ever). Default 2m: generations are slow.
	ProbeTimeout time.Duration `koanf:"probe_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Window: 30 * time.Second, MinRequests: 10, ErrorRate: 0.5, ConsecutiveFailures: 5,
		CoolDown: 10 * time.Second, HalfOpenProbes: 3, ProbeTimeout: 2 * time.Minute,
	}
}

// Validate returns an error wrapping ErrInvalidConfig for a setting that
// cannot work.
func (c Config) Validate() error {
	switch {
	case c.Window < 10*time.Millisecond:
		return fmt.Errorf("%w: window must be at least 10ms, not %v", ErrInvalidConfig, c.Window)
	case c.MinRequests < 1:
		return fmt.Errorf("%w: min_requests must be at least 1, not %d", ErrInvalidConfig, c.MinRequests)
	case !(c.ErrorRate > 0 && c.ErrorRate <= 1):
		return fmt.Errorf("%w: error_rate must be in (0, 1], not %v", ErrInvalidConfig, c.ErrorRate)
	case c.ConsecutiveFailures < 0:
		return fmt.Errorf("%w: consecutive_failures must not be negative, not %d", ErrInvalidConfig, c.ConsecutiveFailures)
	case c.CoolDown <= 0:
		return fmt.Errorf("%w: cool_down must be positive, not %v", ErrInvalidConfig, c.CoolDown)
	case c.HalfOpenProbes < 1:
		return fmt.Errorf("%w: half_open_probes must be at least 1, not %d", ErrInvalidConfig, c.HalfOpenProbes)
	case c.ProbeTimeout <= 0:
		return fmt.Errorf("%w: probe_timeout must be positive, not %v", ErrInvalidConfig, c.ProbeTimeout)
	}
	return nil
}

// Fallback maps a model to the model its requests go to while its
// breaker rejects them. Route follows one step only: a fallback's own
// fallback is not tried.
type Fallback map[string]string

// Validate returns an error wrapping ErrInvalidConfig for an empty model
// name or a model that is its own fallback.
func (f Fallback) Validate() error {
	for m, fb := range f {
		if m == "" || fb == "" {
			return fmt.Errorf("%w: fallback %q -> %q: empty model", ErrInvalidConfig, m, fb)
		}
		if m == fb {
			return fmt.Errorf("%w: model %q is its own fallback", ErrInvalidConfig, m)
		}
	}
	return nil
}

// State is a breaker's state. Its text form is closed, open or half-open.
type State int

// The states of a breaker.
const (
	// Closed lets every request through and watches their outcomes.
	Closed State = iota
	// Open rejects every request until the cool-down is over.
	Open
	// HalfOpen lets a few probes through to see whether the model is back.
	HalfOpen
)

var stateNames = [...]string{Closed: "closed", Open: "open", HalfOpen: "half-open"}

// String returns the state's name, or State(n) for an unknown one.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText returns the state's name.
func (s State) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("breaker: unknown state %d", int(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText reads a state's name; another text is an error.
func (s *State) UnmarshalText(b []byte) error {
	if i := slices.Index(stateNames[:], string(b)); i >= 0 {
		*s = State(i)
		return nil
	}
	return fmt.Errorf("breaker: unknown state %q", b)
}

// Reason says why a breaker changed state.
type Reason string

// The reasons of transitions.
const (
	// ReasonErrorRate: closed -> open, the window's error rate reached
	// Config.ErrorRate with at least Config.MinRequests outcomes.
	ReasonErrorRate Reason = "error_rate"
	// ReasonConsecutiveFailures: closed -> open, Config.ConsecutiveFailures
	// outcomes in a row failed.
	ReasonConsecutiveFailures Reason = "consecutive_failures"
	// ReasonCoolDown: open -> half-open, Config.CoolDown passed.
	ReasonCoolDown Reason = "cool_down_elapsed"
	// ReasonProbesSucceeded: half-open -> closed, Config.HalfOpenProbes
	// probes succeeded.
	ReasonProbesSucceeded Reason = "probes_succeeded"
	// ReasonProbeFailed: half-open -> open, a probe failed.
	ReasonProbeFailed Reason = "probe_failed"
)

// Numbers are the counts behind a decision.
type Numbers struct {
	// Requests and Failures count outcomes: in the window while closed,
	// of probes while half-open.
	Requests int `json:"requests"`
	Failures int `json:"failures"`
	// ErrorRate is Failures over Requests, 0 when there were none.
	ErrorRate float64 `json:"error_rate"`
	// Consecutive counts the latest failures in a row.
	Consecutive int `json:"consecutive"`
}

// Transition is a change of a breaker's state, with why and the numbers
// behind it; At is when it happened (for open -> half-open, the end of the
// cool-down, which may be before the call that noticed it).
type Transition struct {
	Model   string    `json:"model"`
	From    State     `json:"from"`
	To      State     `json:"to"`
	At      time.Time `json:"at"`
	Reason  Reason    `json:"reason"`
	Numbers Numbers   `json:"numbers"`
}

// String describes the transition in one line for logs and reports.
func (t Transition) String() string {
	n := t.Numbers
	return fmt.Sprintf("breaker %s: %s -> %s (%s: %d of %d failed, rate %.2f, %d consecutive)",
		t.Model, t.From, t.To, t.Reason, n.Failures, n.Requests, n.ErrorRate, n.Consecutive)
}

// Action is what to do with a request.
type Action int

// The actions of a decision.
const (
	// Allow: send the request; record its outcome.
	Allow Action = iota
	// Probe: send the request as a half-open probe; record its outcome,
	// which decides whether the breaker closes.
	Probe
	// Reject: do not send it; answer 503 breaker_open, retryable.
	Reject
)

// String returns allow, probe or reject.
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Probe:
		return "probe"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the answer to Allow or Route.
type Decision struct {
	Action Action
	// Model is where the request goes: the asked model, or its fallback
	// (then Fallback is true). Record the outcome under Model.
	Model    string
	Fallback bool
	// State is the state of Model's breaker after the decision.
	State State
	// RetryAfter, for Reject, is how long until the breaker lets probes
	// through; 0 when it already does and all are out (retry soon).
	RetryAfter time.Duration
	// Transitions are the state changes the call caused, usually none.
	Transitions []Transition
}

// Allowed reports whether the request may be sent (Allow or Probe).
func (d Decision) Allowed() bool { return d.Action != Reject }

// Err returns nil when the request may be sent, and otherwise an error
// wrapping ErrOpen that names the model.
func (d Decision) Err() error {
	if d.Allowed() {
		return nil
	}
	return fmt.Errorf("%w: model %s is %s, retry after %v", ErrOpen, d.Model, d.State, d.RetryAfter)
}

// Status is a breaker's state for reports and herd_control.
type Status struct {
	Model string `json:"model"`
	State State  `json:"state"`
	// Since is when the breaker entered State.
	Since time.Time `json:"since"`
	// Numbers are the window's while closed, the probes' while half-open,
	// and those that opened it while open.
	Numbers Numbers `json:"numbers"`
	// Probes counts the probes out while half-open.
	Probes int `json:"probes,omitempty"`
	// RetryAt is when an open breaker goes half-open.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// Set holds a breaker per model, created on first use; models never share
// one. It is safe for concurrent use; no method blocks other than on its
// mutex, which every call holds only for a few map and slice operations.
type Set struct {
	cfg      Config
	fallback Fallback
	width    time.Duration

	mu       sync.Mutex // guards breakers
	breakers map[string]*breaker
}

// NewSet returns a set of closed breakers. If cfg or fallback is invalid,
// an error wrapping ErrInvalidConfig is returned. fallback may be nil.
func NewSet(cfg Config, fallback Fallback) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := fallback.Validate(); err != nil {
		return nil, err
	}
	return &Set{cfg: cfg, fallback: fallback, width: cfg.Window / numSlices, breakers: map[string]*breaker{}}, nil
}

// Config returns the configuration the set was built with.
func (s *Set) Config() Config { return s.cfg }

// Allow decides whether a request for model may be sent at now. In
// half-open it hands out at most Config.HalfOpenProbes probes at a time:
// the caller must Record the outcome of each (a probe without an outcome
// holds its place for Config.ProbeTimeout).
func (s *Set) Allow(model string, now time.Time) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(model).allow(now)
}

// Route is Allow with the fallback: when model's breaker rejects the
// request and model has a fallback whose breaker allows it, the request
// goes to the fallback (target and Decision.Model name it, Fallback is
// true). Otherwise it is Allow. The transitions of both breakers are
// returned.
func (s *Set) Route(model string, now time.Time) (target string, d Decision) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d = s.get(model).allow(now)
	fb, ok := s.fallback[model]
	if d.Allowed() || !ok {
		return model, d
	}
	fd := s.get(fb).allow(now)
	fd.Transitions = append(d.Transitions, fd.Transitions...)
	if !fd.Allowed() {
		d.Transitions = fd.Transitions
		return model, d
	}
	fd.Fallback = true
	return fb, fd
}

// Record records the outcome of a request for model that ended at now,
// and returns the state changes it caused, usually none (when both
// opening rules hold at once, the reason is ReasonErrorRate). Outcomes that
// arrive while the breaker is open are ignored (those requests were let
// through before it opened). In half-open every outcome is taken as a
// probe's, whether or not Allow handed it out: herd may learn outcomes
// from its metrics stream rather than from the caller of Allow.
func (s *Set) Record(model string, now time.Time, ok bool) []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.get(model).record(now, ok)
}

// State returns model's state at now without changing anything: an open
// breaker whose cool-down is over reads half-open (the transition itself
// is returned by the next Allow, Route, Record or Advance). A model never
// seen is closed.
func (s *Set) State(model string, now time.Time) State {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.breakers[model]
	if !ok {
		return Closed
	}
	if b.state == Open && !now.Before(b.since.Add(s.cfg.CoolDown)) {
		return HalfOpen
	}
	return b.state
}

// Advance moves every open breaker whose cool-down is over at now to
// half-open and returns those transitions, by model; it also gives back
// the places of lost probes and forgets closed breakers with nothing in
// their window. Call it on a timer so that half-open is announced without
// waiting for a request.
func (s *Set) Advance(now time.Time) []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []Transition
	for m, b := range s.breakers {
		ts = append(ts, b.advance(now)...)
		if b.state == Closed && b.consecutive == 0 && b.numbers(now).Requests == 0 {
			delete(s.breakers, m)
		}
	}
	slices.SortFunc(ts, func(a, b Transition) int { return cmp.Compare(a.Model, b.Model) })
	return ts
}

// Snapshot returns the status at now of every breaker the set holds, by
// model, without changing anything (as State does).
func (s *Set) Snapshot(now time.Time) []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.breakers))
	for _, b := range s.breakers {
		st := Status{Model: b.model, State: b.state, Since: b.since}
		switch b.state {
		case Closed:
			st.Numbers = b.numbers(now)
		case Open:
			st.Numbers = b.opened
			st.RetryAt = b.since.Add(s.cfg.CoolDown)
			if !now.Before(st.RetryAt) {
				st.State, st.Since, st.RetryAt, st.Numbers = HalfOpen, st.RetryAt, time.Time{}, Numbers{}
			}
		case HalfOpen:
			st.Numbers = b.probeNumbers()
			st.Probes = len(b.probes)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Model, b.Model) })
	return out
}

func (s *Set) get(model string) *breaker {
	b := s.breakers[model]
	if b == nil {
		b = &breaker{set: s, model: model}
		s.breakers[model] = b
	}
	return b
}

// breaker is one model's state machine; the Set's mutex guards it.
type breaker struct {
	set   *Set
	model string
	state State
	// since is when the breaker entered state.
	since time.Time
	// slices count the closed state's outcomes; consecutive the latest
	// failures in a row.
	slices      [numSlices]counts
	consecutive int
	// opened are the numbers that last opened the breaker.
	opened Numbers
	// probes holds the start times of the probes out, oldest first;
	// successes counts the probes that succeeded in this half-open.
	probes    []time.Time
	successes int
}

type counts struct {
	idx                int64
	requests, failures int
}

func (b *breaker) sliceOf(t time.Time) int64 {
	n, d := t.UnixNano(), int64(b.set.width)
	q := n / d
	if n%d < 0 {
		q--
	}
	return q
}

// numbers returns the closed state's numbers at now.
func (b *breaker) numbers(now time.Time) Numbers {
	hi := b.sliceOf(now)
	n := Numbers{Consecutive: b.consecutive}
	for _, c := range b.slices {
		if c.idx > hi-numSlices && c.idx <= hi {
			n.Requests += c.requests
			n.Failures += c.failures
		}
	}
	if n.Requests > 0 {
		n.ErrorRate = float64(n.Failures) / float64(n.Requests)
	}
	return n
}

func (b *breaker) probeNumbers() Numbers {
	return Numbers{Requests: b.successes}
}

func (b *breaker) transition(to State, at time.Time, why Reason, n Numbers) Transition {
	t := Transition{Model: b.model, From: b.state, To: to, At: at, Reason: why, Numbers: n}
	b.state, b.since = to, at
	b.probes, b.successes = nil, 0
	switch to {
	case Open:
		b.opened = n
	case Closed:
		b.slices, b.consecutive = [numSlices]counts{}, 0
	}
	return t
}

// advance ends the cool-down of an open breaker and frees the places of
// lost probes of a half-open one.
func (b *breaker) advance(now time.Time) []Transition {
	cfg := b.set.cfg
	switch b.state {
	case Open:
		if end := b.since.Add(cfg.CoolDown); !now.Before(end) {
			return []Transition{b.transition(HalfOpen, end, ReasonCoolDown, b.opened)}
		}
	case HalfOpen:
		i := 0
		for i < len(b.probes) && !now.Before(b.probes[i].Add(cfg.ProbeTimeout)) {
			i++
		}
		b.probes = b.probes[i:]
	}
	return nil
}

func (b *breaker) allow(now time.Time) Decision {
	ts := b.advance(now)
	d := Decision{Model: b.model, Transitions: ts}
	switch b.state {
	case Closed:
		d.Action = Allow
	case Open:
		d.Action, d.RetryAfter = Reject, b.since.Add(b.set.cfg.CoolDown).Sub(now)
	case HalfOpen:
		if len(b.probes) < b.set.cfg.HalfOpenProbes {
			b.probes = append(b.probes, now)
			d.Action = Probe
		} else {
			d.Action = Reject
		}
	}
	d.State = b.state
	return d
}

func (b *breaker) record(now time.Time, ok bool) []Transition {
	cfg := b.set.cfg
	ts := b.advance(now)
	switch b.state {
	case Closed:
		idx := b.sliceOf(now)
		c := &b.slices[int(((idx%numSlices)+numSlices)%numSlices)]
		if c.idx != idx {
			if c.idx > idx && c.requests > 0 {
				// Older than the window: only the run of failures counts it.
				c = &counts{}
			} else {
				*c = counts{idx: idx}
			}
		}
		c.requests++
		if ok {
			b.consecutive = 0
		} else {
			c.failures++
			b.consecutive++
		}
		n := b.numbers(now)
		switch {
		case n.Requests >= cfg.MinRequests && n.ErrorRate >= cfg.ErrorRate:
			ts = append(ts, b.transition(Open, now, ReasonErrorRate, n))
		case cfg.ConsecutiveFailures > 0 && b.consecutive >= cfg.ConsecutiveFailures:
			ts = append(ts, b.transition(Open, now, ReasonConsecutiveFailures, n))
		}
	case HalfOpen:
		if len(b.probes) > 0 {
			b.probes = b.probes[1:]
		}
		if !ok {
			n := Numbers{Requests: b.successes + 1, Failures: 1, Consecutive: 1}
			n.ErrorRate = 1 / float64(n.Requests)
			ts = append(ts, b.transition(Open, now, ReasonProbeFailed, n))
			break
		}
		b.successes++
		if b.successes >= cfg.HalfOpenProbes {
			ts = append(ts, b.transition(Closed, now, ReasonProbesSucceeded, Numbers{Requests: b.successes}))
		}
	}
	return ts
}
