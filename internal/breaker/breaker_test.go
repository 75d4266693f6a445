package breaker

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newSet(t *testing.T, mut func(*Config), fb Fallback) *Set {
	t.Helper()
	cfg := DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	s, err := NewSet(cfg, fb)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type op int

const (
	opAllow op = iota
	opOK
	opFail
	opAdvance
)

// step is one call at t0+at on model ("m" when empty), what it must
// return, and model's state after it.
type step struct {
	at     time.Duration
	op     op
	model  string
	action Action   // opAllow only
	state  State    // State(model) after the step
	why    []Reason // the reasons of the transitions the call returned
}

func run(t *testing.T, s *Set, steps []step) {
	t.Helper()
	for i, st := range steps {
		model := cmpOr(st.model, "m")
		now := t0.Add(st.at)
		var ts []Transition
		switch st.op {
		case opAllow:
			d := s.Allow(model, now)
			if d.Action != st.action {
				t.Fatalf("step %d (+%v allow %s): %v, want %v", i, st.at, model, d.Action, st.action)
			}
			if d.State != st.state {
				t.Fatalf("step %d: decision state %v, want %v", i, d.State, st.state)
			}
			ts = d.Transitions
		case opOK, opFail:
			ts = s.Record(model, now, st.op == opOK)
		case opAdvance:
			ts = s.Advance(now)
		}
		var why []Reason
		for _, tr := range ts {
			why = append(why, tr.Reason)
		}
		if !slices.Equal(why, st.why) {
			t.Fatalf("step %d (+%v op %d %s): transitions %v, want %v", i, st.at, st.op, model, ts, st.why)
		}
		if got := s.State(model, now); got != st.state {
			t.Fatalf("step %d (+%v op %d %s): state %v, want %v", i, st.at, st.op, model, got, st.state)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// outcomes returns one step per character of pattern ('s' success, 'f'
// failure) every second from start, all leaving the breaker closed.
func outcomes(start time.Duration, pattern string) []step {
	var out []step
	for i, c := range pattern {
		o := opOK
		if c == 'f' {
			o = opFail
		}
		out = append(out, step{at: start + time.Duration(i)*time.Second, op: o, state: Closed})
	}
	return out
}

func cat(parts ...[]step) []step { return slices.Concat(parts...) }

// openByConsecutive opens m at +4s with five failures.
var openByConsecutive = cat(outcomes(0, "ffff"), []step{{at: 4 * time.Second, op: opFail, state: Open, why: []Reason{ReasonConsecutiveFailures}}})

func TestTransitions(t *testing.T) {
	tests := []struct {
		name  string
		mut   func(*Config)
		steps []step
	}{
		{
			name: "closed to open by error rate",
			steps: cat(outcomes(0, "sfsfsfsfs"),
				[]step{{at: 9 * time.Second, op: opFail, state: Open, why: []Reason{ReasonErrorRate}}}),
		},
		{
			name: "not below min requests, then a success completes the minimum",
			// Eight failures in nine, never five in a row: too few requests.
			steps: cat(outcomes(0, "ffffsffff"),
				[]step{{at: 9 * time.Second, op: opOK, state: Open, why: []Reason{ReasonErrorRate}}}),
		},
		{
			name:  "rate below the threshold stays closed",
			steps: outcomes(0, "ssfsfsfsssfsfsfsssfs"),
		},
		{
			name: "closed to open by consecutive failures, under min requests",
			steps: cat(outcomes(0, "sss"), outcomes(3*time.Second, "ffff"),
				[]step{{at: 7 * time.Second, op: opFail, state: Open, why: []Reason{ReasonConsecutiveFailures}}}),
		},
		{
			name: "both rules at once report the error rate",
			steps: cat(outcomes(0, "sssss"), outcomes(5*time.Second, "ffff"),
				[]step{{at: 9 * time.Second, op: opFail, state: Open, why: []Reason{ReasonErrorRate}}}),
		},
		{
			name:  "consecutive rule off",
			mut:   func(c *Config) { c.ConsecutiveFailures = 0 },
			steps: outcomes(0, "fffffffff"),
		},
		{
			name: "the window forgets old failures",
			mut:  func(c *Config) { c.ConsecutiveFailures = 0 },
			// Nine failures, then 40s later one more: the window holds one.
			steps: cat(outcomes(0, "fffffffff"), outcomes(48*time.Second, "f"),
				outcomes(49*time.Second, "ffffffff"),
				[]step{{at: 57 * time.Second, op: opFail, state: Open, why: []Reason{ReasonErrorRate}}}),
		},
		{
			name: "open rejects until the cool-down, then probes",
			steps: cat(openByConsecutive, []step{
				{at: 5 * time.Second, op: opAllow, action: Reject, state: Open},
				{at: 13*time.Second + 999*time.Millisecond, op: opAllow, action: Reject, state: Open},
				{at: 14 * time.Second, op: opAllow, action: Probe, state: HalfOpen, why: []Reason{ReasonCoolDown}},
			}),
		},
		{
			name: "outcomes while open are ignored",
			steps: cat(openByConsecutive, []step{
				{at: 5 * time.Second, op: opOK, state: Open},
				{at: 6 * time.Second, op: opFail, state: Open},
				{at: 7 * time.Second, op: opAllow, action: Reject, state: Open},
			}),
		},
		{
			name: "half-open to closed after the probes succeed; probes limited",
			steps: cat(openByConsecutive, []step{
				{at: 14 * time.Second, op: opAllow, action: Probe, state: HalfOpen, why: []Reason{ReasonCoolDown}},
				{at: 15 * time.Second, op: opAllow, action: Probe, state: HalfOpen},
				{at: 15 * time.Second, op: opAllow, action: Probe, state: HalfOpen},
				{at: 15 * time.Second, op: opAllow, action: Reject, state: HalfOpen}, // three out
				{at: 16 * time.Second, op: opOK, state: HalfOpen},
				{at: 16 * time.Second, op: opAllow, action: Probe, state: HalfOpen}, // a place came back
				{at: 17 * time.Second, op: opOK, state: HalfOpen},
				{at: 18 * time.Second, op: opOK, state: Closed, why: []Reason{ReasonProbesSucceeded}},
				{at: 18 * time.Second, op: opAllow, action: Allow, state: Closed},
				// Closing starts afresh: four failures do not reopen it.
				{at: 19 * time.Second, op: opFail, state: Closed},
				{at: 19 * time.Second, op: opFail, state: Closed},
				{at: 19 * time.Second, op: opFail, state: Closed},
				{at: 19 * time.Second, op: opFail, state: Closed},
			}),
		},
		{
			name: "half-open to open on a probe failure, with a new cool-down",
			steps: cat(openByConsecutive, []step{
				{at: 14 * time.Second, op: opAllow, action: Probe, state: HalfOpen, why: []Reason{ReasonCoolDown}},
				{at: 14 * time.Second, op: opAllow, action: Probe, state: HalfOpen},
				{at: 15 * time.Second, op: opOK, state: HalfOpen},
				{at: 16 * time.Second, op: opFail, state: Open, why: []Reason{ReasonProbeFailed}},
				{at: 25 * time.Second, op: opAllow, action: Reject, state: Open},
				{at: 26 * time.Second, op: opAllow, action: Probe, state: HalfOpen, why: []Reason{ReasonCoolDown}},
			}),
		},
		{
			name: "a record after the cool-down counts as a probe",
			mut:  func(c *Config) { c.HalfOpenProbes = 1 },
			steps: cat(openByConsecutive, []step{
				{at: 20 * time.Second, op: opOK, state: Closed, why: []Reason{ReasonCoolDown, ReasonProbesSucceeded}},
			}),
		},
		{
			name: "advance announces half-open without a request",
			steps: cat(openByConsecutive, []step{
				{at: 10 * time.Second, op: opAdvance, state: Open},
				{at: 20 * time.Second, op: opAdvance, state: HalfOpen, why: []Reason{ReasonCoolDown}},
				{at: 21 * time.Second, op: opAdvance, state: HalfOpen},
				{at: 21 * time.Second, op: opAllow, action: Probe, state: HalfOpen},
			}),
		},
		{
			name: "a lost probe gives its place back after the probe timeout",
			mut:  func(c *Config) { c.HalfOpenProbes = 1; c.ProbeTimeout = time.Minute },
			steps: cat(openByConsecutive, []step{
				{at: 14 * time.Second, op: opAllow, action: Probe, state: HalfOpen, why: []Reason{ReasonCoolDown}},
				{at: 73 * time.Second, op: opAllow, action: Reject, state: HalfOpen},
				{at: 74 * time.Second, op: opAllow, action: Probe, state: HalfOpen},
			}),
		},
		{
			name: "one model failing does not affect another",
			steps: cat(
				[]step{{at: 0, op: opOK, model: "b", state: Closed}},
				openByConsecutive,
				[]step{
					{at: 5 * time.Second, op: opAllow, action: Reject, state: Open},
					{at: 5 * time.Second, op: opAllow, model: "b", action: Allow, state: Closed},
					{at: 5 * time.Second, op: opFail, model: "b", state: Closed},
					{at: 6 * time.Second, op: opAllow, model: "b", action: Allow, state: Closed},
					{at: 6 * time.Second, op: opAllow, model: "never-seen", action: Allow, state: Closed},
				}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run(t, newSet(t, tt.mut, nil), tt.steps)
		})
	}
}

func TestTransitionNumbers(t *testing.T) {
	s := newSet(t, nil, nil)
	var got []Transition
	record := func(at time.Duration, ok bool) { got = append(got, s.Record("m", t0.Add(at), ok)...) }
	for i, c := range "sfsfsfsfsf" { // opens on the tenth: 5 of 10
		record(time.Duration(i)*time.Second, c == 's')
	}
	got = append(got, s.Allow("m", t0.Add(20*time.Second)).Transitions...) // half-open, probe 1
	s.Allow("m", t0.Add(20*time.Second))                                   // probe 2
	record(21*time.Second, true)
	record(22*time.Second, false) // reopens
	got = append(got, s.Advance(t0.Add(40*time.Second))...)
	for range 3 {
		s.Allow("m", t0.Add(41*time.Second))
	}
	for range 3 {
		record(42*time.Second, true)
	}
	want := []Transition{
		{Model: "m", From: Closed, To: Open, At: t0.Add(9 * time.Second), Reason: ReasonErrorRate,
			Numbers: Numbers{Requests: 10, Failures: 5, ErrorRate: 0.5, Consecutive: 1}},
		{Model: "m", From: Open, To: HalfOpen, At: t0.Add(19 * time.Second), Reason: ReasonCoolDown,
			Numbers: Numbers{Requests: 10, Failures: 5, ErrorRate: 0.5, Consecutive: 1}},
		{Model: "m", From: HalfOpen, To: Open, At: t0.Add(22 * time.Second), Reason: ReasonProbeFailed,
			Numbers: Numbers{Requests: 2, Failures: 1, ErrorRate: 0.5, Consecutive: 1}},
		{Model: "m", From: Open, To: HalfOpen, At: t0.Add(32 * time.Second), Reason: ReasonCoolDown,
			Numbers: Numbers{Requests: 2, Failures: 1, ErrorRate: 0.5, Consecutive: 1}},
		{Model: "m", From: HalfOpen, To: Closed, At: t0.Add(42 * time.Second), Reason: ReasonProbesSucceeded,
			Numbers: Numbers{Requests: 3}},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("transitions\n got %v\nwant %v", got, want)
	}
	if s := got[0].String(); s != "breaker m: closed -> open (error_rate: 5 of 10 failed, rate 0.50, 1 consecutive)" {
		t.Errorf("String() = %q", s)
	}
	b, err := json.Marshal(got[0])
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"model":"m","from":"closed","to":"open","at":"2026-01-01T12:00:09Z","reason":"error_rate",` +
		`"numbers":{"requests":10,"failures":5,"error_rate":0.5,"consecutive":1}}`
	if string(b) != wantJSON {
		t.Errorf("JSON %s\nwant %s", b, wantJSON)
	}
	var back Transition
	if err := json.Unmarshal(b, &back); err != nil || back != got[0] {
		t.Errorf("JSON round trip: %+v, %v", back, err)
	}
}

func TestRejectDecision(t *testing.T) {
	s := newSet(t, nil, nil)
	for i := range 5 {
		s.Record("m", t0.Add(time.Duration(i)*time.Second), false)
	}
	d := s.Allow("m", t0.Add(6*time.Second))
	if d.Allowed() || d.RetryAfter != 8*time.Second || d.Model != "m" || d.State != Open {
		t.Fatalf("decision %+v, want reject with 8s to wait", d)
	}
	if err := d.Err(); !errors.Is(err, ErrOpen) {
		t.Errorf("Err() = %v, want ErrOpen", err)
	}
	if err := s.Allow("other", t0).Err(); err != nil {
		t.Errorf("Err() of an allowed request = %v", err)
	}
}

func TestRoute(t *testing.T) {
	// open opens model's breaker at +at+4ms, to go half-open 10s later.
	open := func(s *Set, model string, at time.Duration) {
		for i := range 5 {
			s.Record(model, t0.Add(at+time.Duration(i)*time.Millisecond), false)
		}
	}
	tests := []struct {
		name     string
		fallback Fallback
		setup    func(*Set)
		at       time.Duration
		target   string
		action   Action
		fb       bool
		why      []Reason
	}{
		{"closed goes to the model", Fallback{"a": "b"}, func(*Set) {}, time.Second, "a", Allow, false, nil},
		{"open goes to the fallback", Fallback{"a": "b"}, func(s *Set) { open(s, "a", 0) }, time.Second, "b", Allow, true, nil},
		{"open without a fallback is rejected", Fallback{"x": "b"}, func(s *Set) { open(s, "a", 0) }, time.Second, "a", Reject, false, nil},
		{"open with an open fallback is rejected", Fallback{"a": "b"}, func(s *Set) { open(s, "a", 0); open(s, "b", 0) }, time.Second, "a", Reject, false, nil},
		{"one step only", Fallback{"a": "b", "b": "c"}, func(s *Set) { open(s, "a", 0); open(s, "b", 0) }, time.Second, "a", Reject, false, nil},
		{"half-open probes the model itself", Fallback{"a": "b"}, func(s *Set) { open(s, "a", 0) }, 11 * time.Second, "a", Probe, false, []Reason{ReasonCoolDown}},
		{"half-open with its probes out goes to the fallback", Fallback{"a": "b"},
			func(s *Set) {
				open(s, "a", 0)
				for range 3 {
					s.Allow("a", t0.Add(11*time.Second))
				}
			}, 12 * time.Second, "b", Allow, true, nil},
		{"a half-open fallback gets a probe", Fallback{"a": "b"}, func(s *Set) { open(s, "b", 0); open(s, "a", 5*time.Second) },
			11 * time.Second, "b", Probe, true, []Reason{ReasonCoolDown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(t, nil, tt.fallback)
			tt.setup(s)
			target, d := s.Route("a", t0.Add(tt.at))
			var why []Reason
			for _, tr := range d.Transitions {
				why = append(why, tr.Reason)
			}
			if target != tt.target || d.Model != tt.target || d.Action != tt.action || d.Fallback != tt.fb || !slices.Equal(why, tt.why) {
				t.Errorf("Route = %s, %+v; want %s %v fallback=%v %v", target, d, tt.target, tt.action, tt.fb, tt.why)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	s := newSet(t, nil, nil)
	s.Record("c", t0, true)
	s.Record("c", t0, false)
	for i := range 5 {
		s.Record("a", t0.Add(time.Duration(i)*time.Second), false)
	}
	for i := range 5 {
		s.Record("h", t0.Add(time.Duration(i)*time.Second), false)
	}
	s.Allow("h", t0.Add(15*time.Second))
	got := s.Snapshot(t0.Add(10 * time.Second))
	want := []Status{
		{Model: "a", State: Open, Since: t0.Add(4 * time.Second), Numbers: Numbers{Requests: 5, Failures: 5, ErrorRate: 1, Consecutive: 5},
			RetryAt: t0.Add(14 * time.Second)},
		{Model: "c", State: Closed, Numbers: Numbers{Requests: 2, Failures: 1, ErrorRate: 0.5, Consecutive: 1}},
		{Model: "h", State: HalfOpen, Since: t0.Add(14 * time.Second), Probes: 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("snapshot\n got %+v\nwant %+v", got, want)
	}
	// After the cool-down an open breaker reads half-open, unchanged.
	if got := s.Snapshot(t0.Add(14 * time.Second)); got[0].State != HalfOpen || got[0].Since != t0.Add(14*time.Second) {
		t.Errorf("open after the cool-down: %+v", got[0])
	}
	if st := s.State("a", t0.Add(14*time.Second)); st != HalfOpen {
		t.Errorf("State after the cool-down %v", st)
	}
}

func TestAdvanceForgetsIdleClosed(t *testing.T) {
	s := newSet(t, nil, nil)
	s.Record("idle", t0, true)
	s.Record("failing", t0, false) // one failure in a row is kept beyond the window
	s.Advance(t0.Add(time.Hour))
	snap := s.Snapshot(t0.Add(time.Hour))
	if len(snap) != 1 || snap[0].Model != "failing" || snap[0].Numbers.Consecutive != 1 {
		t.Errorf("after an hour: %+v", snap)
	}
}

func TestStateText(t *testing.T) {
	for _, st := range []State{Closed, Open, HalfOpen} {
		b, err := st.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back State
		if err := back.UnmarshalText(b); err != nil || back != st || string(b) != st.String() {
			t.Errorf("%v: %q -> %v, %v", st, b, back, err)
		}
	}
	var st State
	if err := st.UnmarshalText([]byte("ajar")); err == nil {
		t.Error("unknown state accepted")
	}
	if _, err := State(7).MarshalText(); err == nil {
		t.Error("unknown state marshalled")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		fb   Fallback
		ok   bool
	}{
		{"defaults", func(*Config) {}, nil, true},
		{"with fallback", func(*Config) {}, Fallback{"a": "b", "b": "a"}, true},
		{"zero window", func(c *Config) { c.Window = 0 }, nil, false},
		{"no min requests", func(c *Config) { c.MinRequests = 0 }, nil, false},
		{"zero error rate", func(c *Config) { c.ErrorRate = 0 }, nil, false},
		{"error rate above 1", func(c *Config) { c.ErrorRate = 1.5 }, nil, false},
		{"error rate 1", func(c *Config) { c.ErrorRate = 1 }, nil, true},
		{"negative consecutive", func(c *Config) { c.ConsecutiveFailures = -1 }, nil, false},
		{"consecutive off", func(c *Config) { c.ConsecutiveFailures = 0 }, nil, true},
		{"no cool-down", func(c *Config) { c.CoolDown = 0 }, nil, false},
		{"no probes", func(c *Config) { c.HalfOpenProbes = 0 }, nil, false},
		{"no probe timeout", func(c *Config) { c.ProbeTimeout = 0 }, nil, false},
		{"own fallback", func(*Config) {}, Fallback{"a": "a"}, false},
		{"empty fallback", func(*Config) {}, Fallback{"a": ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mut(&cfg)
			_, err := NewSet(cfg, tt.fb)
			if (err == nil) != tt.ok {
				t.Fatalf("NewSet: %v", err)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestConcurrentModels(t *testing.T) {
	s := newSet(t, nil, Fallback{"m0": "m1"})
	var wg sync.WaitGroup
	for g := range 8 {
		model := fmt.Sprint("m", g)
		wg.Go(func() {
			for i := range 1000 {
				now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
				if _, d := s.Route(model, now); d.Allowed() {
					s.Record(d.Model, now, d.Fallback || g%2 == 1) // odd models succeed; m0's fallback is m1
				}
				if i%100 == 0 {
					s.Advance(now)
					s.Snapshot(now)
				}
			}
		})
	}
	wg.Wait()
	now := t0.Add(10 * time.Second)
	for g := range 8 {
		want := Closed
		if g%2 == 0 {
			want = Open
		}
		if got := s.State(fmt.Sprint("m", g), now); got != want && (want != Open || got != HalfOpen) {
			t.Errorf("m%d: %v, want %v", g, got, want)
		}
	}
}
