package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/slo"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

// Config configures a replay. The zero values of the fields below
// PlanConfig take their defaults; PlanConfig.Speed must be set (see
// DefaultConfig).
type Config struct {
	PlanConfig
	// Concurrency bounds the outstanding requests at MaxSpeed, where each
	// request is due as soon as a slot is free. Default 64.
	Concurrency int
	// MaxInflight bounds the outstanding requests at a paced speed. A send
	// that finds it reached waits for a free slot and is counted as client
	// backlog; its latency still counts from its intended time.
	// Default 10000.
	MaxInflight int
	// RunID prefixes every request id: <RunID>-<seq>. It must differ
	// between runs against one deployment (JetStream drops a repeated id
	// within its de-duplication window, and herd_results answers it from
	// the first run). 1-100 characters of A-Z a-z 0-9 _ = -.
	// Default "replay-" and a NUID.
	RunID string
	// Drain is how long to wait for outstanding answers after the last
	// send; requests still outstanding then are lost. Default 60s.
	Drain time.Duration
	// Source and Target describe the capture and the deployment in the
	// report (for example "file traffic.jsonl" and the NATS URL).
	Source, Target string
	// Progress, when set, shows the progress line (see Progress).
	Progress io.Writer
	// OnSend, when set, is called after each send with what was sent. It
	// runs on the sending goroutine and must not block.
	OnSend func(SendEvent)
	// Targets are the service-level targets the report judges each
	// priority against (Report.Levels). Default slo.Default.
	Targets *slo.Config
}

// SendEvent describes one send, for Config.OnSend.
type SendEvent struct {
	Step Step
	// ID is the request id (Nats-Msg-Id) the step was sent with.
	ID string
	// Intended is when the step was due; Actual when it was handed to
	// JetStream.
	Intended, Actual time.Time
	// Err is the publish error, if JetStream refused it at once.
	Err error
}

// DefaultConfig returns a configuration with every default: speed 1,
// seed 1, concurrency 64, max inflight 10000, drain 60s.
func DefaultConfig() Config {
	return Config{
		PlanConfig:  PlanConfig{Speed: 1, Seed: 1},
		Concurrency: 64,
		MaxInflight: 10000,
		Drain:       time.Minute,
	}
}

// Validate fills in defaults and returns an error wrapping ErrBadConfig
// naming the first bad setting.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.Drain == 0 {
		c.Drain = d.Drain
	}
	if c.RunID == "" {
		c.RunID = "replay-" + nuid.Next()
	}
	switch {
	case !(c.Speed > 0):
		return fmt.Errorf("%w: speed %v must be positive or max", ErrBadConfig, c.Speed)
	case c.Duration < 0:
		return fmt.Errorf("%w: duration %v must not be negative", ErrBadConfig, c.Duration)
	case c.Concurrency < 0:
		return fmt.Errorf("%w: concurrency %d must be positive", ErrBadConfig, c.Concurrency)
	case c.MaxInflight < 0:
		return fmt.Errorf("%w: max inflight %d must be positive", ErrBadConfig, c.MaxInflight)
	case c.Drain < 0:
		return fmt.Errorf("%w: drain %v must not be negative", ErrBadConfig, c.Drain)
	case len(c.RunID) > 100 || !wire.ValidToken(c.RunID):
		return fmt.Errorf("%w: run id %q must be 1-100 characters of A-Z a-z 0-9 _ = -", ErrBadConfig, c.RunID)
	}
	return nil
}

// Replayer plays a plan against herd. Use it for one Run.
type Replayer struct {
	cfg     Config
	plan    *Plan
	records int
	log     *zap.Logger
	c       *Collector
	// freed gets a token whenever a request reaches its final outcome.
	freed chan struct{}

	// Test seams: the clock, the wait for a step's time, the transport.
	now        func() time.Time
	sleepUntil func(ctx context.Context, t time.Time) error
	// publish sends step st as request id; an error means it was not sent.
	publish func(st Step, id string) error
	// listen starts receiving answers (onReply); it returns the stop
	// function.
	listen func() (func(), error)
	// blocked, when set, is called when a send starts waiting for a free
	// slot.
	blocked func()
}

// New returns a replayer that plays recs on nc with cfg (validated here).
// It returns ErrNoRecords when the filter leaves nothing to play and an
// error wrapping ErrBadConfig for a bad setting. log may be nil.
func New(nc *nats.Conn, recs []capture.Record, cfg Config, log *zap.Logger) (*Replayer, error) {
	r, err := newReplayer(recs, cfg, log)
	if err != nil {
		return nil, err
	}
	limit := r.limit()
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(2*limit+1024),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			if seq, ok := r.seqOf(m.Header.Get(wire.HdrMsgID)); ok {
				r.failed(seq, publishCode(err))
			}
		}),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
			if !ack.Duplicate {
				return
			}
			// JetStream already had this id: herd will not run it again.
			if seq, ok := r.seqOf(m.Header.Get(wire.HdrMsgID)); ok {
				r.failed(seq, "duplicate_id")
			}
		}))
	if err != nil {
		return nil, err
	}
	inbox := nc.NewRespInbox()
	r.publish = func(st Step, id string) error {
		m := nats.NewMsg(wire.ReqSubject(st.Record.Priority, st.Record.Agent))
		m.Data = st.Payload
		m.Header.Set(wire.HdrMsgID, id)
		m.Header.Set(wire.HdrReplyTo, inbox+"."+id)
		for _, h := range capture.ReplayedHeaders {
			if v := st.Record.Headers[h]; v != "" {
				m.Header.Set(h, v)
			}
		}
		_, err := js.PublishMsgAsync(m)
		return err
	}
	r.listen = func() (func(), error) {
		sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) { r.onReply(m.Subject[len(inbox)+1:], m.Header, m.Data) })
		if err != nil {
			return nil, fmt.Errorf("subscribe %s: %w", inbox, err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		return func() { _ = sub.Unsubscribe() }, nil
	}
	return r, nil
}

// newReplayer builds everything but the transport.
func newReplayer(recs []capture.Record, cfg Config, log *zap.Logger) (*Replayer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	plan, err := NewPlan(recs, cfg.PlanConfig)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Replayer{
		cfg: cfg, plan: plan, records: len(recs), log: log.Named("replay"),
		freed: make(chan struct{}, 1), now: time.Now, sleepUntil: sleepUntil,
	}, nil
}

// Plan returns the replayer's schedule (for its totals; Run consumes it).
func (r *Replayer) Plan() *Plan { return r.plan }

// RunID returns the run's id, the prefix of every request id.
func (r *Replayer) RunID() string { return r.cfg.RunID }

func (r *Replayer) maxSpeed() bool { return math.IsInf(r.cfg.Speed, 1) }

// limit is the bound on outstanding requests.
func (r *Replayer) limit() int {
	if r.maxSpeed() {
		return r.cfg.Concurrency
	}
	return r.cfg.MaxInflight
}

func (r *Replayer) id(seq int) string { return r.cfg.RunID + "-" + strconv.Itoa(seq) }

// seqOf reads the sequence number back from a request id of this run.
func (r *Replayer) seqOf(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, r.cfg.RunID+"-")
	if !ok {
		return 0, false
	}
	seq, err := strconv.Atoi(rest)
	return seq, err == nil && seq >= 0
}

// onReply takes a reply for request id. Streaming chunks (no Herd-Status)
// are skipped: the final message counts.
func (r *Replayer) onReply(id string, h nats.Header, body []byte) {
	st := h.Get(wire.HdrStatus)
	if st == "" {
		return
	}
	at := r.now()
	seq, ok := r.seqOf(id)
	if !ok {
		return
	}
	status, err := strconv.Atoi(st)
	if err != nil {
		status = 500
	}
	code := ""
	if status >= 400 {
		var eb wire.ErrorBody
		if json.Unmarshal(body, &eb) == nil {
			code = string(eb.Code)
		}
	}
	if r.c.Final(seq, at, status, code, h.Get(wire.HdrCache)) {
		r.signal()
	}
}

func (r *Replayer) failed(seq int, code string) {
	if r.c.Failed(seq, r.now(), code) {
		r.signal()
	}
}

func (r *Replayer) signal() {
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

// publishCode names a refused publish.
func publishCode(err error) string {
	if wire.QueueFull(err) {
		return string(wire.CodeQueueFull)
	}
	return "publish_failed"
}

// Run plays the plan, then waits up to Config.Drain for the outstanding
// answers, and returns the report. Each step is sent at the run's start
// plus its offset; at MaxSpeed as soon as fewer than Concurrency requests
// are outstanding. When ctx ends, sending stops and the answers already
// due are still awaited for a short grace (at most 5s, within Drain);
// ctx ending during the drain ends it at once. The error is non-nil only
// when the replay could not start.
func (r *Replayer) Run(ctx context.Context) (*Report, error) {
	stop, err := r.listen()
	if err != nil {
		return nil, err
	}
	defer stop()
	start := r.now()
	r.c = NewCollector(start)

	var phase sync.Mutex // guards phaseName
	phaseName := "sending"
	setPhase := func(s string) { phase.Lock(); phaseName = s; phase.Unlock() }
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan struct{})
	if r.cfg.Progress != nil {
		p := NewProgress(r.cfg.Progress, r.plan.Total())
		go func() {
			defer close(pdone)
			p.run(pctx, func() (time.Duration, string, Counts) {
				phase.Lock()
				defer phase.Unlock()
				return r.now().Sub(start), phaseName, r.c.Counts()
			})
		}()
	} else {
		close(pdone)
	}

	r.send(ctx, start)
	setPhase("draining")
	r.drain(ctx)
	pcancel()
	<-pdone

	rep := r.c.Report(r.now())
	rep.Params = r.params()
	targets := slo.Default()
	if r.cfg.Targets != nil {
		targets = *r.cfg.Targets
	}
	rep.Judge(targets)
	return rep, nil
}

// send runs the schedule until it ends or ctx does.
func (r *Replayer) send(ctx context.Context, start time.Time) {
	limit := r.limit()
	for ctx.Err() == nil {
		st, ok := r.plan.Next()
		if !ok {
			return
		}
		intended := start.Add(st.Offset)
		if r.maxSpeed() {
			if r.cfg.Duration > 0 && r.now().Sub(start) >= r.cfg.Duration {
				return
			}
		} else if err := r.sleepUntil(ctx, intended); err != nil {
			return
		}
		if r.c.Outstanding() >= limit {
			waited := r.now()
			if err := r.waitSlot(ctx, limit); err != nil {
				return
			}
			if !r.maxSpeed() {
				r.c.Backlogged(r.now().Sub(waited))
			} else if r.cfg.Duration > 0 && r.now().Sub(start) >= r.cfg.Duration {
				return // the duration ended while it waited for a slot
			}
		}
		actual := r.now()
		if r.maxSpeed() {
			intended = actual // due as soon as a slot is free
		}
		id := r.id(st.Seq)
		r.c.Sent(st.Seq, st.Record, intended, actual)
		err := r.publish(st, id)
		if err != nil {
			r.log.Debug("publish refused", zap.String("request_id", id), zap.Error(err))
			r.failed(st.Seq, publishCode(err))
		}
		if r.cfg.OnSend != nil {
			r.cfg.OnSend(SendEvent{Step: st, ID: id, Intended: intended, Actual: actual, Err: err})
		}
	}
}

// waitSlot blocks until fewer than limit requests are outstanding or ctx
// ends.
func (r *Replayer) waitSlot(ctx context.Context, limit int) error {
	if r.blocked != nil {
		r.blocked()
	}
	for r.c.Outstanding() >= limit {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.freed:
		}
	}
	return nil
}

// drain waits until nothing is outstanding, Drain has passed, or ctx ends
// (after a grace of at most 5s when ctx had already ended).
func (r *Replayer) drain(ctx context.Context) {
	wait := r.cfg.Drain
	done := ctx.Done()
	if ctx.Err() != nil {
		wait, done = min(wait, 5*time.Second), nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for r.c.Outstanding() > 0 {
		select {
		case <-r.freed:
		case <-timer.C:
			return
		case <-done:
			return
		}
	}
}

func (r *Replayer) params() Params {
	p := Params{
		RunID: r.cfg.RunID, Source: r.cfg.Source, Target: r.cfg.Target, Records: r.records,
		Selected: len(r.plan.Records()), CaptureSeconds: r.plan.Span().Seconds(), Speed: FormatSpeed(r.cfg.Speed),
		Loop: r.cfg.Loop, Filter: r.cfg.Filter.String(), Seed: r.cfg.Seed, MaxInflight: r.cfg.MaxInflight,
		Drain: r.cfg.Drain.String(),
	}
	if r.cfg.Duration > 0 {
		p.Duration = r.cfg.Duration.String()
	}
	if r.maxSpeed() {
		p.Concurrency = r.cfg.Concurrency
	}
	return p
}

// spinWindow is how long before a send's time sleepUntil stops trusting
// the timer and polls the clock instead: a timer can fire a millisecond
// late on a virtual machine, polling is exact to microseconds.
const spinWindow = time.Millisecond

// sleepUntil waits until t or until ctx ends (returning its error). It
// sleeps on a timer until shortly before t, then polls the clock while
// yielding to other goroutines for the rest: at most spinWindow, and at
// most half the wait, so polling never takes more than half a CPU (5% at
// 50 requests a second).
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	if d -= min(spinWindow, d/2); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
	for time.Now().Before(t) {
		if err := ctx.Err(); err != nil {
			return err
		}
		runtime.Gosched()
	}
	return nil
}
