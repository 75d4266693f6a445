package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/reqmetrics"
	"github.com/sutazai/herd/internal/wire"
)

// knownCapture is a capture of a known traffic pattern: 150 requests from
// 3 agents at 3 priorities for 2 models over 2.98 s, with inter-arrival
// times cycling through 0, 10, 20, 30 and 40 ms (so some records share a
// timestamp), every fifth body repeating an earlier one (20% repeats),
// and every tenth request streaming.
func knownCapture() []capture.Record {
	agents := []string{"a1", "a2", "a3"}
	models := []string{"tiny", "small"}
	gaps := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond}
	rng := rand.New(rand.NewPCG(7, 11))
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var recs []capture.Record
	for i := range 150 {
		if i > 0 {
			at = at.Add(gaps[i%len(gaps)])
		}
		model := models[(i/9)%2]
		stream := ""
		if i%10 == 3 {
			stream = `,"stream":true`
		}
		body := fmt.Sprintf(`{"model":%q,"prompt":"question %d","options":{"temperature":0}%s}`, model, i, stream)
		if i%5 == 4 {
			j := rng.IntN(i)
			body, model = string(recs[j].Body), recs[j].Model
		}
		recs = append(recs, capture.Record{
			Time: at, ID: "orig-" + strconv.Itoa(i), Priority: wire.Priorities[(i/3)%3], Agent: agents[i%3],
			Model: model, Op: "generate", Body: json.RawMessage(body),
		})
	}
	return recs
}

// seen is a request as the NATS server received it.
type seen struct {
	subject, id, body string
	at                time.Time
}

// watchRequests records every request published on herd.req.>, in the
// order the server received them.
func watchRequests(t *testing.T, s *stack) func() []seen {
	t.Helper()
	nc, _ := s.srv.Connect(t)
	var mu sync.Mutex
	var got []seen
	sub, err := nc.Subscribe(wire.ReqPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		mu.Lock()
		got = append(got, seen{m.Subject, m.Header.Get(wire.HdrMsgID), string(m.Data), at})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() []seen {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

type mixKey struct {
	priority wire.Priority
	agent    string
	model    string
	body     string
}

// TestReplayKnownTraffic replays a known capture at 1x and 4x against a
// real in-process herd and checks what a user relies on: the server got
// the capture's requests (same priority, agent, model and body mix, the
// repeats identical), each agent's in capture order, at their scaled
// times; every request is accounted for; and the report's counts match
// the dispatcher's and worker's own metrics.
func TestReplayKnownTraffic(t *testing.T) {
	recs := knownCapture()
	origIndex := map[string]int{}
	want := map[mixKey]int{}
	for i, r := range recs {
		origIndex[r.ID] = i
		want[mixKey{r.Priority, r.Agent, r.Model, string(r.Body)}]++
	}
	for _, speed := range []float64{1, 4} {
		t.Run(FormatSpeed(speed), func(t *testing.T) {
			s := newStack(t, 5*time.Millisecond, true)
			requests := watchRequests(t, s)
			nc, js := s.srv.Connect(t)
			var mu sync.Mutex
			sends := map[string]SendEvent{}
			cfg := DefaultConfig()
			cfg.Speed, cfg.Drain, cfg.Source = speed, 30*time.Second, "knownCapture"
			cfg.OnSend = func(e SendEvent) {
				mu.Lock()
				sends[e.ID] = e
				mu.Unlock()
			}
			r, err := New(nc, recs, cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
			if err != nil {
				t.Fatal(err)
			}
			probe := startTimerProbe(t.Context())
			rep, err := r.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			timerMean, timerP99, timerMax := stats(probe())

			// (2) Every replayed request is accounted for.
			if rep.Sent != int64(len(recs)) || rep.Sent != rep.Answered+rep.Errors || rep.Lost != 0 || rep.Duplicates != 0 {
				t.Fatalf("sent %d (capture %d), answered %d, errors %d %v, lost %d, duplicates %d",
					rep.Sent, len(recs), rep.Answered, rep.Errors, rep.ErrorsByCode, rep.Lost, rep.Duplicates)
			}
			if rep.Errors != 0 {
				t.Fatalf("errors %v", rep.ErrorsByCode)
			}

			// (1) What the server received: the capture's mix, each agent
			// in capture order (as the NATS server received them).
			var got []seen
			natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
				if got = requests(); len(got) != len(recs) {
					return fmt.Errorf("server saw %d requests, want %d", len(got), len(recs))
				}
				return nil
			})
			mix := map[mixKey]int{}
			last := map[string]int{}
			for _, g := range got {
				e, ok := sends[g.id]
				if !ok || !strings.HasPrefix(g.id, r.RunID()+"-") {
					t.Fatalf("server saw request %q that the replay did not send", g.id)
				}
				p, agent, err := wire.ParseDoor(g.subject)
				if err != nil {
					t.Fatal(err)
				}
				var body struct{ Model string }
				_ = json.Unmarshal([]byte(g.body), &body)
				mix[mixKey{p, agent, body.Model, g.body}]++
				i := origIndex[e.Step.Record.ID]
				if prev, ok := last[agent]; ok && i <= prev {
					t.Errorf("agent %s: capture record %d arrived after record %d", agent, i, prev)
				}
				last[agent] = i
			}
			if fmt.Sprint(mix) != fmt.Sprint(want) {
				t.Fatalf("server saw mix %v\nwant %v", mix, want)
			}

			// ... at the scaled offsets: the dispatcher captured the replay
			// again, each request with the time JetStream stored it. The
			// new capture is the old one with new ids and times.
			var again []capture.Record
			natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				var err error
				if again, err = LoadStream(t.Context(), js, time.Time{}, time.Time{}); err != nil || len(again) != len(recs) {
					return fmt.Errorf("HERD_CAPTURE holds %d records (%v), want %d", len(again), err, len(recs))
				}
				return nil
			})
			var errs []time.Duration
			first, lastAt := again[0].Time, again[0].Time
			for _, rc := range again {
				e, ok := sends[rc.ID]
				orig := e.Step.Record
				if !ok || rc.Priority != orig.Priority || rc.Agent != orig.Agent || rc.Model != orig.Model || string(rc.Body) != string(orig.Body) {
					t.Fatalf("captured again as %+v, sent as %s from %+v", rc, rc.ID, orig)
				}
				errs = append(errs, rc.Time.Sub(rep.Started.Add(e.Step.Offset)))
				first, lastAt = minTime(first, rc.Time), maxTime(lastAt, rc.Time)
			}
			mean, p99, worst := stats(errs)
			span := lastAt.Sub(first)
			wantSpan := time.Duration(float64(r.Plan().Span()) / speed)
			t.Logf("speed %s: stored by JetStream vs schedule: error mean %v, p99 %v, max %v; client send lag mean %.3fms, p99 %.3fms; span %v (want %v); a bare timer in this process meanwhile: late by %v mean, %v p99, %v max",
				FormatSpeed(speed), mean.Round(time.Microsecond), p99.Round(time.Microsecond), worst.Round(time.Microsecond),
				rep.SendLag.MeanMs, rep.SendLag.P99Ms, span.Round(time.Microsecond), wantSpan, timerMean.Round(time.Microsecond), timerP99.Round(time.Microsecond), timerMax.Round(time.Microsecond))
			// The bounds hold on a quiet 2-core machine, where a bare Go
			// timer in this process fires within 3 ms at p99 (about 0.6
			// ms late on average on a virtual machine; the sender polls
			// the clock for its last millisecond). When the machine is
			// busier than that (other test binaries: go test ./... runs
			// several at once), nothing in the process can keep them, and
			// they grow by what the bare timer lost meanwhile: twice its
			// mean and twice its worst case (the sender's and the
			// server's wake-ups both pay it). Under the race detector they
			// are only logged.
			maxMean, maxP99 := 2*time.Millisecond, 5*time.Millisecond
			if timerP99 > 3*time.Millisecond {
				maxMean, maxP99 = maxMean+2*timerMean, maxP99+2*timerMax
				t.Logf("busy machine: bounds raised to mean %v, p99 %v", maxMean, maxP99)
			}
			if !raceEnabled && (p99 >= maxP99 || mean >= maxMean) {
				t.Errorf("send-time error mean %v, p99 %v; want under %v and %v", mean, p99, maxMean, maxP99)
			}
			if d := span - wantSpan; !raceEnabled && (d < -2*maxP99 || d > 2*maxP99) {
				t.Errorf("requests spanned %v at %s, want %v", span, FormatSpeed(speed), wantSpan)
			}

			// (3) The report's counts match what the server counted.
			natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				return matchServer(t, s, rep)
			})
		})
	}
}

// matchServer compares the report with the dispatcher's and the worker's
// request counters.
func matchServer(t *testing.T, s *stack, rep *Report) error {
	disp := counters(t, s.dreg, "herd_dispatcher_requests_total", "priority", reqmetrics.OutcomeLabel)
	work := counters(t, s.wreg, "herd_worker_requests_total", "priority", "model", reqmetrics.OutcomeLabel)
	var hits, coalesced, ran, workerOK, serverErrors float64
	byPrio := map[string]float64{}
	missByModel := map[string]float64{}
	for k, v := range disp {
		p, result, _ := strings.Cut(k, "/")
		switch result {
		case "batched":
			ran += v
		case "hit":
			hits += v
			byPrio[p] += v
		case "coalesced":
			coalesced += v
			byPrio[p] += v
		case "already_answered":
		default:
			serverErrors += v
		}
	}
	var workerAll float64
	for k, v := range work {
		parts := strings.Split(k, "/")
		workerAll += v
		if parts[2] != "ok" {
			serverErrors += v
			continue
		}
		workerOK += v
		byPrio[parts[0]] += v
		missByModel[parts[1]] += v
	}
	switch {
	case hits != float64(rep.CacheHits) || coalesced != float64(rep.CacheCoalesced) || workerOK != float64(rep.CacheMisses):
		return fmt.Errorf("server: hit %v coalesced %v worker ok %v; report: hit %d coalesced %d miss %d",
			hits, coalesced, workerOK, rep.CacheHits, rep.CacheCoalesced, rep.CacheMisses)
	case hits+coalesced+workerOK != float64(rep.Answered) || serverErrors != float64(rep.Errors):
		return fmt.Errorf("server answered %v with %v errors; report %d and %d", hits+coalesced+workerOK, serverErrors, rep.Answered, rep.Errors)
	case ran != workerAll:
		return fmt.Errorf("dispatcher batched %v requests, worker answered %v", ran, workerAll)
	}
	for p, sum := range rep.ByPriority {
		if byPrio[p] != float64(sum.Answered) {
			return fmt.Errorf("priority %s: server answered %v, report %d", p, byPrio[p], sum.Answered)
		}
	}
	for m, sum := range rep.ByModel {
		if missByModel[m] != float64(sum.CacheMisses) {
			return fmt.Errorf("model %s: worker ran %v, report %d misses", m, missByModel[m], sum.CacheMisses)
		}
	}
	return nil
}

// stats returns the mean, 99th percentile and maximum of ds.
func stats(ds []time.Duration) (mean, p99, worst time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(len(s)), s[(len(s)*99+99)/100-1], s[len(s)-1]
}

// startTimerProbe measures how late a bare Go timer fires in this process,
// every 7 ms until it is read (at most a minute): the floor under any
// send-time accuracy. Reading it returns the latenesses.
func startTimerProbe(ctx context.Context) func() []time.Duration {
	stop := make(chan struct{})
	done := make(chan []time.Duration)
	go func() {
		var lates []time.Duration
		start := time.Now()
		timer := time.NewTimer(0)
		<-timer.C
		for i := 1; i < 60000/7; i++ {
			due := start.Add(time.Duration(i) * 7 * time.Millisecond)
			timer.Reset(time.Until(due))
			select {
			case <-timer.C:
				lates = append(lates, time.Since(due))
			case <-stop:
				done <- lates
				return
			case <-ctx.Done():
				done <- lates
				return
			}
		}
		<-stop
		done <- lates
	}()
	return func() []time.Duration {
		close(stop)
		return <-done
	}
}

// TestReplayFromStreamMaxSpeed reads records from HERD_CAPTURE (up to a
// time) and replays the high-priority ones as fast as 4 outstanding
// requests allow, looping for 300 ms: every request is new, high, and
// accounted for.
func TestReplayFromStreamMaxSpeed(t *testing.T) {
	s := newStack(t, 5*time.Millisecond, false)
	nc, js := s.srv.Connect(t)
	all := knownCapture()[:30]
	for i := range all {
		b, _ := json.Marshal(&all[i])
		if _, err := js.Publish(t.Context(), all[i].Subject(), b); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := LoadStream(t.Context(), js, time.Time{}, all[21].Time)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 21 || recs[0].ID != all[0].ID || recs[20].ID != all[20].ID {
		t.Fatalf("read %d records from the stream, want the first 21", len(recs))
	}
	requests := watchRequests(t, s)
	cfg := DefaultConfig()
	// Long enough to loop even when the first requests are slow on a loaded
	// machine (9 requests took over 300ms under a parallel test run).
	cfg.Speed, cfg.Concurrency, cfg.Loop, cfg.Duration = MaxSpeed, 4, true, 1500*time.Millisecond
	cfg.Filter, _ = ParseFilter([]string{"priority=high"})
	r, err := New(nc, recs, cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent <= int64(len(r.Plan().Records())) || rep.Sent != rep.Answered+rep.Errors || rep.Lost != 0 || rep.Duplicates != 0 {
		t.Fatalf("sent %d (%d records per loop), answered %d, errors %v, lost %d, duplicates %d",
			rep.Sent, len(r.Plan().Records()), rep.Answered, rep.ErrorsByCode, rep.Lost, rep.Duplicates)
	}
	if rep.Params.Speed != "max" || rep.Params.Concurrency != 4 || rep.SendSeconds > 2.0 {
		t.Fatalf("params %+v, sending took %vs", rep.Params, rep.SendSeconds)
	}
	var got []seen
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got = requests(); int64(len(got)) != rep.Sent {
			return fmt.Errorf("server saw %d requests, replay sent %d", len(got), rep.Sent)
		}
		return nil
	})
	ids := map[string]bool{}
	for _, g := range got {
		if !strings.HasPrefix(g.subject, wire.ReqPrefix+".high.") || ids[g.id] {
			t.Fatalf("request %s on %s: not high, or its id was used twice", g.id, g.subject)
		}
		ids[g.id] = true
	}
	t.Logf("max speed, 4 outstanding: %d requests in %.3fs, %.0f/s, p50 %.2fms, cache hit rate %.0f%%",
		rep.Sent, rep.SendSeconds, rep.Throughput, rep.Latency.P50Ms, 100*rep.CacheHitRate)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestMaxSpeedStopsAtDuration: at max speed with every slot waiting for a
// slow answer, no request is sent after --duration: one that waited for a
// slot past the end is not sent (before, it went out when the slot freed,
// seconds after the end).
func TestMaxSpeedStopsAtDuration(t *testing.T) {
	s := newStack(t, 1500*time.Millisecond, false)
	nc, _ := s.srv.Connect(t)
	cfg := DefaultConfig()
	cfg.Speed, cfg.Concurrency, cfg.Loop, cfg.Duration = MaxSpeed, 2, true, 300*time.Millisecond
	r, err := New(nc, knownCapture()[:5], cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep.SendSeconds >= 1.0 || rep.Sent < 1 || rep.Sent > 2 || rep.Sent != rep.Answered+rep.Errors {
		t.Fatalf("sent %d, the last %.2fs after the start (duration 0.3s, answers take 1.5s), answered %d, errors %v",
			rep.Sent, rep.SendSeconds, rep.Answered, rep.ErrorsByCode)
	}
}
