package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/backoff"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/settle"
	"github.com/sutazai/herd/internal/window"
	"github.com/sutazai/herd/internal/wire"
)

// call is one Ollama call: one generate or chat item, or the embed items
// of a batch that can share one /api/embed call.
type call struct {
	items []job.Item
	embed bool
}

// plan groups a batch's items into calls: every generate and chat item is
// its own call; embed items with the same options become one call.
func plan(items []job.Item) []call {
	var calls []call
	embeds := map[string]int{} // compatibility key -> index in calls
	for _, it := range items {
		if it.Op != request.OpEmbed {
			calls = append(calls, call{items: []job.Item{it}})
			continue
		}
		r, err := request.Decode(it.Body, request.Limits{})
		key := ""
		if err == nil {
			b, _ := json.Marshal(struct {
				T *bool
				K *api.Duration
				O map[string]any
			}{r.Embed.Truncate, r.Embed.KeepAlive, r.Embed.Options})
			key = string(b)
		}
		if i, ok := embeds[key]; ok && err == nil {
			calls[i].items = append(calls[i].items, it)
			continue
		}
		embeds[key] = len(calls)
		calls = append(calls, call{items: []job.Item{it}, embed: true})
	}
	return calls
}

// batchRun is the state of one batch being run.
type batchRun struct {
	b           job.Batch
	calls       []call
	delivery    uint64
	started     time.Time
	stored      time.Time // when JetStream stored the batch
	redelivered bool
	final       bool // last delivery: retryable failures become final errors
	// mu guards unfinished, stats and settled.
	mu         sync.Mutex
	unfinished int
	stats      map[string]callStats
	// settled are the requests whose outcome this run stored: kept in
	// herd_results while the batch runs (keepAlive), so that a redelivery
	// of the batch never finds one expired and runs it again.
	settled []string
}

func (br *batchRun) settledHere(id string) {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.settled = append(br.settled, id)
}

func (br *batchRun) settledIDs() []string {
	br.mu.Lock()
	defer br.mu.Unlock()
	return slices.Clone(br.settled)
}

func (br *batchRun) setStats(id string, cs callStats) {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.stats == nil {
		br.stats = map[string]callStats{}
	}
	br.stats[id] = cs
}

func (br *batchRun) statsOf(id string) callStats {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.stats[id]
}

// storeRetry is how long finish keeps trying to store a request's outcome
// (on a cluster, while the bucket's stream elects a new leader) before the
// request is handed back for a later delivery.
const storeRetry = 30 * time.Second

// claim decodes a fetched batch and claims its calls in the slot pool, so
// the fetch loop sees them before it fetches more. It returns nil for a
// batch it settled itself (undecodable: dead-lettered).
func (w *Worker) claim(ctx context.Context, msg jetstream.Msg) *batchRun {
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("batch without metadata", zap.Error(err))
		_ = msg.Term()
		return nil
	}
	br := &batchRun{started: time.Now(), stored: meta.Timestamp, redelivered: meta.NumDelivered > 1, delivery: meta.NumDelivered}
	if md := w.defs.BatchTemplate.MaxDeliver; md > 0 && meta.NumDelivered >= uint64(md) {
		br.final = true
	}
	if err := json.Unmarshal(msg.Data(), &br.b); err != nil {
		w.log.Error("undecodable batch dead-lettered", zap.Error(err))
		w.settler.DeadLetter(ctx, job.Item{ID: "batch-" + strconv.FormatUint(meta.Sequence.Stream, 10), Priority: wire.Low, Agent: "unknown", Body: msg.Data()}, "undecodable batch: "+err.Error())
		_ = msg.Term()
		return nil
	}
	if !br.b.Priority.Valid() {
		br.b.Priority = wire.Low
	}
	br.calls = plan(br.b.Items)
	w.slots.claim(br.b.Priority, br.b.Model, len(br.calls))
	return br
}

// runBatch runs every call of a claimed batch and then acknowledges it,
// or hands it back with a delay when a retryable failure left requests
// without an outcome.
func (w *Worker) runBatch(ctx context.Context, msg jetstream.Msg, br *batchRun) {
	stopKeep := w.keepAlive(context.WithoutCancel(ctx), msg, br)
	defer stopKeep()

	w.m.batches.Inc()
	var wg sync.WaitGroup
	for _, c := range br.calls {
		wg.Go(func() { w.runCall(ctx, br, c) })
	}
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		// Shutting down past the drain timeout: let another worker finish.
		_ = msg.Nak()
	case br.unfinished > 0:
		delay := min(time.Second<<min(br.delivery-1, 5), 30*time.Second)
		w.log.Warn("batch handed back for retry", zap.String("batch", br.b.ID), zap.Int("unfinished", br.unfinished), zap.Uint64("delivery", br.delivery), zap.Duration("delay", delay))
		_ = msg.NakWithDelay(delay)
	default:
		_ = msg.Ack()
	}
}

// keepAlive tells JetStream the batch is still being worked on, so a long
// generation is not redelivered to another worker, and keeps the outcomes
// this run stored in herd_results until the batch is acknowledged: a batch
// can run longer than queue.results_ttl (16 long generations on one
// slot), and a redelivery after a crash must find every outcome of it,
// and the stream mark of every streaming request that sent chunks.
func (w *Worker) keepAlive(ctx context.Context, msg jetstream.Msg, br *batchRun) (stop func()) {
	every := max(w.defs.BatchTemplate.AckWait/3, 200*time.Millisecond)
	refreshEvery := w.resultsTTL / 3
	// The loop ticks at the sooner of the two: a results TTL shorter than
	// the ack wait must not wait for the next in-progress ack.
	tick := every
	if refreshEvery > 0 {
		tick = min(tick, max(refreshEvery, 50*time.Millisecond))
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		lastProgress, lastRefresh := time.Now(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if time.Since(lastProgress) >= every-tick/2 {
				lastProgress = time.Now()
				_ = msg.InProgress()
			}
			if refreshEvery > 0 && time.Since(lastRefresh) >= refreshEvery-tick/2 {
				lastRefresh = time.Now()
				ids := br.settledIDs()
				for _, it := range br.b.Items {
					if it.Stream {
						// Its stream mark (MarkStream), if a run sent chunks:
						// a re-run after a crash must still find it.
						ids = append(ids, it.ID+".stream")
					}
				}
				for _, id := range ids {
					tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					if err := w.store.Touch(tctx, id); err != nil {
						w.log.Warn("keep a stored outcome while its batch runs", zap.String("request_id", id), zap.Error(err))
					}
					cancel()
				}
			}
		}
	}()
	return func() { close(done) }
}

// runCall settles the items of one call: skipped when already answered
// (redelivery), answered at once when canceled or expired, otherwise run on
// a slot with retries.
func (w *Worker) runCall(ctx context.Context, br *batchRun, c call) {
	p := br.b.Priority
	live := w.settleStale(ctx, br, w.unanswered(ctx, br, c.items))
	if len(live) == 0 {
		w.slots.unclaim(p, br.b.Model, 1)
		return
	}
	if err := w.slots.acquire(ctx, p, br.b.Model); err != nil {
		w.slots.unclaim(p, br.b.Model, 1)
		w.handBack(br, live)
		return
	}
	defer w.slots.release(p, br.b.Model)
	// Canceled or expired while waiting for the slot.
	if live = w.settleStale(ctx, br, live); len(live) == 0 {
		return
	}

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer w.markRunning(live, cancel)()
	callCtx, stop := withEarliestDeadline(callCtx, live)
	defer stop()
	// A non-streaming caller that leaves has its call canceled (probe.go).
	defer w.watchCallers(callCtx, live, cancel)()
	w.callOllama(ctx, callCtx, br, c, live)
}

// unanswered returns the items this batch runs: not those another batch
// here runs, nor those an earlier run answered (it gives their answer).
func (w *Worker) unanswered(ctx context.Context, br *batchRun, items []job.Item) []job.Item {
	var live []job.Item
	for _, it := range items {
		if !w.own(it.ID, br) {
			// Another batch here runs the same request (a redelivered
			// copy): it gives the answer.
			continue
		}
		if br.redelivered || it.Redelivered {
			// Answered by an earlier run (sent again when that run was
			// this process's and its claim's acknowledgement was lost).
			if o, _, err := w.settler.Recover(ctx, it); err == nil && o != nil {
				if it.Leader {
					w.announce(ctx, it, o)
				}
				w.disown(it.ID, br)
				continue
			}
		}
		live = append(live, it)
	}
	return live
}

// markRunning records live as running under cancel, so that an agent's
// cancel reaches the call; the function it returns removes them.
func (w *Worker) markRunning(live []job.Item, cancel context.CancelFunc) func() {
	return w.calls.start(live, cancel)
}

// withEarliestDeadline returns ctx ending at the earliest deadline of
// items, and the function that releases it; ctx itself when none has one.
func withEarliestDeadline(ctx context.Context, items []job.Item) (context.Context, context.CancelFunc) {
	var deadline time.Time
	for _, it := range items {
		if !it.Deadline.IsZero() && (deadline.IsZero() || it.Deadline.Before(deadline)) {
			deadline = it.Deadline
		}
	}
	if deadline.IsZero() {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, deadline)
}

// callOllama runs the call on callCtx, retrying in place up to Attempts
// times, and settles its items or hands them back for redelivery. ctx is
// the batch's: outcomes are settled on it after callCtx ended.
func (w *Worker) callOllama(ctx, callCtx context.Context, br *batchRun, c call, live []job.Item) {
	wait := w.cfg.RetryBackoff // doubles per attempt; slept with jitter
	st := &streamed{}
	for attempt := 1; ; attempt++ {
		start := time.Now()
		answers, err := w.attempt(callCtx, c, live, st)
		if errors.Is(err, errStreamRerun) {
			it := live[0]
			w.finish(ctx, br, it, outcome.FromError(it.ID, wire.Errorf(wire.CodeBackendUnavailable, errStreamRerun.Error())), nil)
			return
		}
		code, retryable := ollama.Classify(err)
		if !c.embed && st.seq > 0 && (errors.Is(err, errDiverged) || (retryable && attempt >= w.cfg.Attempts)) {
			// The caller has part of a stream that cannot be resumed here
			// (or by another worker): end it with a retryable error.
			it := live[0]
			w.m.observeCall(br.b.Model, string(it.Op), wire.CodeBackendUnavailable, time.Since(start))
			w.finish(ctx, br, it, outcome.FromError(it.ID, wire.Errorf(wire.CodeBackendUnavailable,
				fmt.Sprintf("ollama failed after %d streamed chunks (%v); send the request again", st.seq, err))), nil)
			return
		}
		w.m.observeCall(br.b.Model, string(live[0].Op), code, time.Since(start))
		if code != wire.CodeCanceled && code != wire.CodeDeadlineExceeded {
			w.events.Call(&events.Call{At: time.Now(), Model: br.b.Model, Op: string(live[0].Op), Worker: w.cfg.ID,
				OK: err == nil, Code: string(code), Ms: time.Since(start).Milliseconds(), Request: live[0].ID})
		}
		if err == nil {
			w.answered(ctx, br, c, live, answers, start)
			return
		}
		switch {
		case code == wire.CodeCanceled && ctx.Err() != nil:
			w.handBack(br, live) // shutdown: redeliver
		case code == wire.CodeCanceled || code == wire.CodeDeadlineExceeded:
			w.settleEnded(ctx, br, live)
		case retryable && attempt < w.cfg.Attempts:
			w.log.Info("ollama call failed; retrying", zap.String("model", br.b.Model), zap.Int("attempt", attempt), zap.Error(err))
			select {
			case <-time.After(backoff.Jitter(wait)):
			case <-callCtx.Done():
			}
			wait *= 2
			continue
		case retryable && !br.final:
			w.log.Warn("ollama call failed; batch will be redelivered", zap.String("model", br.b.Model), zap.Error(err))
			w.handBack(br, live)
		default:
			w.settleFailed(ctx, br, live, err, code, retryable)
		}
		return
	}
}

// attempt makes one Ollama call for live: one embed call for all of them,
// else one generate or chat call for the one item.
func (w *Worker) attempt(ctx context.Context, c call, live []job.Item, st *streamed) ([]answer, error) {
	if c.embed {
		return w.embed(ctx, live)
	}
	a, err := w.generate(ctx, live[0], st)
	return []answer{a}, err
}

// answered finishes each item of a call that succeeded, started at start,
// with its answer.
func (w *Worker) answered(ctx context.Context, br *batchRun, c call, live []job.Item, answers []answer, start time.Time) {
	if !c.embed {
		w.countTruncation(br.b.Model, answers[0].promptTokens)
	}
	for i, it := range live {
		br.setStats(it.ID, callStats{ollama: time.Since(start), prompt: answers[i].promptTokens, eval: answers[i].evalTokens, start: start})
		o := &outcome.Outcome{RequestID: it.ID, Status: 200, Body: answers[i].body, Cache: wire.CacheMiss}
		w.finish(ctx, br, it, o, answers[i].final)
	}
}

// settleEnded answers each item of a call that was canceled by its agent
// or ran past its deadline.
func (w *Worker) settleEnded(ctx context.Context, br *batchRun, live []job.Item) {
	for _, it := range live {
		e := wire.Errorf(wire.CodeDeadlineExceeded, "deadline passed while running")
		if w.isCanceled(it.Agent, it.ID) {
			e = wire.Errorf(wire.CodeCanceled, "request canceled by its agent")
		}
		w.finish(ctx, br, it, outcome.FromError(it.ID, e), nil)
	}
}

// settleFailed answers each item of a call that failed for good with
// Ollama's error; one that failed on every delivery is answered 503 and
// dead-lettered.
func (w *Worker) settleFailed(ctx context.Context, br *batchRun, live []job.Item, err error, code wire.Code, retryable bool) {
	msg := err.Error()
	for _, it := range live {
		e, dead := wire.Errorf(code, msg), ""
		if retryable {
			e = wire.Errorf(wire.CodeBackendUnavailable, "ollama failed on every delivery: "+msg)
			dead = e.Message
		}
		w.settle(ctx, br, it, outcome.FromError(it.ID, e), nil, dead)
	}
}

// countTruncation counts a prompt that filled its model's window: Ollama
// kept only its end.
func (w *Worker) countTruncation(model string, promptTokens int) {
	if window.Truncated(promptTokens, w.numCtx(model)) {
		w.m.truncated.WithLabelValues(model).Inc()
	}
}

// settleStale answers the items that were canceled or whose deadline
// passed, and returns the others.
func (w *Worker) settleStale(ctx context.Context, br *batchRun, items []job.Item) []job.Item {
	live := items[:0:0]
	for _, it := range items {
		switch {
		case w.isCanceled(it.Agent, it.ID):
			w.finish(ctx, br, it, outcome.FromError(it.ID, wire.Errorf(wire.CodeCanceled, "request canceled by its agent")), nil)
		case !it.Deadline.IsZero() && !time.Now().Before(it.Deadline):
			w.finish(ctx, br, it, outcome.FromError(it.ID, wire.Errorf(wire.CodeDeadlineExceeded, "deadline passed before the request could run")), nil)
		default:
			live = append(live, it)
		}
	}
	return live
}

// handBack marks items to be answered on a later delivery and gives up
// this run's claim on them.
func (w *Worker) handBack(br *batchRun, items []job.Item) {
	for _, it := range items {
		w.disown(it.ID, br)
	}
	br.addUnfinished(len(items))
}

func (br *batchRun) addUnfinished(n int) {
	br.mu.Lock()
	br.unfinished += n
	br.mu.Unlock()
}

// answer is one request's result from Ollama: the complete body (what a
// non-streaming caller gets and what is stored), and for streaming callers
// the final chunk, which still has to be sent.
type answer struct {
	body  json.RawMessage
	final json.RawMessage
	// sent counts the streaming chunks already sent to the caller.
	sent int
	// promptTokens and evalTokens are Ollama's prompt_eval_count and
	// eval_count.
	promptTokens, evalTokens int
}

// callStats is what a request's Ollama call measured, for its event.
type callStats struct {
	ollama       time.Duration
	prompt, eval int
	start        time.Time
}

// prepare decodes an item and applies the worker's per-model defaults.
func (w *Worker) prepare(it job.Item) (*request.Request, error) {
	r, err := request.Decode(it.Body, request.Limits{})
	if err != nil {
		return nil, err
	}
	// Options that change the shared runner are herd's, never an agent's
	// (request.RunnerOptions; a dispatcher refused or removed the agent's):
	// any change makes Ollama reload the model for everyone. So every call
	// runs with herd's num_thread, its model's one num_ctx and herd's
	// keep_alive, the others at Ollama's defaults; num_predict at most
	// the model's cap.
	opts := r.Options()
	numCtx := opts["num_ctx"]
	r.Replace()
	r.SetOption("num_thread", w.numThread(r.Model))
	// One num_ctx per model (measured here: a few mixed requests cost more
	// in reloads than all the generation). A request that asked for more is
	// counted, and so is a prompt that filled the window (truncated):
	// models[].num_ctx is the knob. Every model has a window, listed in
	// the configuration or not (numCtx: the optimizer's, the configured,
	// else the model's own read from Ollama); the num_ctx admission left
	// (an agent profile's) never changes it. Only a model Ollama could
	// not describe yet runs without num_ctx: in Ollama's one default.
	if n := w.numCtx(r.Model); n > 0 {
		if asked, ok := numCtx.(float64); ok && int(asked) > n {
			w.m.numCtxAbove.WithLabelValues(r.Model).Inc()
		}
		r.SetOption("num_ctx", n)
	}
	w.cfg.Runner.Clamp(r)
	if ka, ok := w.modelKeepAlive(r.Model); ok {
		d := &api.Duration{Duration: ka}
		switch r.Op {
		case request.OpGenerate:
			r.Generate.KeepAlive = d
		case request.OpChat:
			r.Chat.KeepAlive = d
		case request.OpEmbed:
			r.Embed.KeepAlive = d
		}
	}
	return r, nil
}

// streamed is what a streaming caller has received so far. It outlives
// one attempt, so a retry after Ollama died resumes the stream: chunks the
// caller has are not sent again, and a retry that generates a different
// beginning (sampling at temperature > 0) is refused with errDiverged.
type streamed struct {
	text   string // the text of the chunks sent
	seq    int    // how many chunks were sent
	tools  int    // how many of them carried tool calls
	marked bool   // this run holds the request's stream mark (outcome.Store.MarkStream)
}

// errStreamRerun is returned when a streaming request runs again (its
// worker died, its batch was redelivered) after an earlier run sent
// chunks to the caller: a new run would splice a second sample onto the
// caller's text, so the request ends with a retryable error instead.
var errStreamRerun = errors.New("an earlier run of this streaming request already sent chunks to the caller and stopped; send the request again")

// errDiverged is returned when a retried stream does not reproduce what
// the caller already received.
var errDiverged = errors.New("the retried generation differs from the chunks already streamed")

// resume returns the part of piece, found at offset pos of this attempt's
// text, that the caller has not received, or errDiverged.
func (st *streamed) resume(pos int, piece string) (string, error) {
	if pos >= len(st.text) {
		return piece, nil
	}
	have := st.text[pos:]
	if len(piece) <= len(have) {
		if have[:len(piece)] != piece {
			return "", errDiverged
		}
		return "", nil
	}
	if piece[:len(have)] != have {
		return "", errDiverged
	}
	return piece[len(have):], nil
}

// generate runs one generate or chat item, streaming chunks to the caller
// when asked (continuing from st after a failed attempt).
func (w *Worker) generate(ctx context.Context, it job.Item, st *streamed) (answer, error) {
	r, err := w.prepare(it)
	if err != nil {
		return answer{}, err
	}
	ch := &chunks{w: w, it: it, st: st, stream: it.Stream}
	var a answer
	var done bool
	switch r.Op {
	case request.OpChat:
		a, done, err = w.chat(ctx, r.Chat, ch)
	default:
		a, done, err = w.generateText(ctx, r.Generate, ch)
	}
	if err == nil && !done {
		// The api client returns nil when the stream just ends (Ollama
		// died, or our context canceled the body): never an answer.
		err = ctx.Err()
		if err == nil {
			err = ollama.ErrIncomplete
		}
	}
	if err == nil && ch.stream && ch.text.Len() < len(st.text) {
		err = errDiverged // shorter than what the caller already has
	}
	a.sent = st.seq
	if err == nil && a.final != nil {
		a.final = withSeq(a.final, st.seq)
	}
	return a, err
}

// chunks is one attempt's text, and the chunks of it a streaming caller
// has not received yet.
type chunks struct {
	w      *Worker
	it     job.Item
	st     *streamed
	stream bool
	text   strings.Builder
}

// take records a chunk's text and returns the part still to be sent.
func (ch *chunks) take(piece string) (string, error) {
	pos := ch.text.Len()
	ch.text.WriteString(piece)
	if !ch.stream {
		return piece, nil
	}
	return ch.st.resume(pos, piece)
}

// send publishes chunk v to the caller.
func (ch *chunks) send(ctx context.Context, v any) error {
	st, it := ch.st, ch.it
	if !st.marked {
		// The first chunk any run sends: mark the stream, so that a
		// later run (after a crash) knows the caller has chunks.
		first, err := ch.w.store.MarkStream(ctx, it.ID)
		if err != nil {
			return err // retried; no chunk was sent
		}
		if !first {
			return errStreamRerun
		}
		st.marked = true
	}
	m := nats.NewMsg(it.Reply)
	m.Data, _ = json.Marshal(v)
	m.Header.Set(wire.HdrRequestID, it.ID)
	m.Header.Set(wire.HdrSeq, strconv.Itoa(st.seq))
	m.Reply = goneSubject(it.ID) // NATS answers there when the caller is gone
	st.seq++
	_ = ch.w.nc.PublishMsg(m)
	return nil
}

// chat runs a chat request; done reports that Ollama sent its last chunk.
func (w *Worker) chat(ctx context.Context, req *api.ChatRequest, ch *chunks) (a answer, done bool, err error) {
	stream, st := ch.stream, ch.st
	req.Stream = &stream
	var final api.ChatResponse
	// Tool calls come in chunks of their own, without content; the
	// answer holds them all, and a retried stream does not send again
	// the ones the caller has.
	var calls []api.ToolCall
	toolChunks := 0
	err = w.ollama.Chat(ctx, req, func(resp api.ChatResponse) error {
		piece, err := ch.take(resp.Message.Content)
		if err != nil {
			return err
		}
		resp.Message.Content = piece
		calls = append(calls, resp.Message.ToolCalls...)
		if resp.Done {
			final, done = resp, true
			if stream {
				a.final, _ = json.Marshal(resp)
			}
			return nil
		}
		if len(resp.Message.ToolCalls) > 0 {
			if toolChunks++; toolChunks <= st.tools {
				resp.Message.ToolCalls = nil // sent by an earlier attempt
			} else {
				st.tools = toolChunks
			}
		}
		if stream && (piece != "" || len(resp.Message.ToolCalls) > 0) {
			st.text += piece
			return ch.send(ctx, resp)
		}
		return nil
	})
	final.Message.Content = ch.text.String()
	final.Message.ToolCalls = calls
	if final.Message.Role == "" {
		final.Message.Role = "assistant"
	}
	a.body, _ = json.Marshal(final)
	a.promptTokens, a.evalTokens = final.PromptEvalCount, final.EvalCount
	return a, done, err
}

// generateText runs a generate request; done reports that Ollama sent its
// last chunk.
func (w *Worker) generateText(ctx context.Context, req *api.GenerateRequest, ch *chunks) (a answer, done bool, err error) {
	stream, st := ch.stream, ch.st
	req.Stream = &stream
	var final api.GenerateResponse
	err = w.ollama.Generate(ctx, req, func(resp api.GenerateResponse) error {
		piece, err := ch.take(resp.Response)
		if err != nil {
			return err
		}
		resp.Response = piece
		if resp.Done {
			final, done = resp, true
			if stream {
				a.final, _ = json.Marshal(resp)
			}
			return nil
		}
		if stream && piece != "" {
			st.text += piece
			return ch.send(ctx, resp)
		}
		return nil
	})
	final.Response = ch.text.String()
	a.body, _ = json.Marshal(final)
	a.promptTokens, a.evalTokens = final.PromptEvalCount, final.EvalCount
	return a, done, err
}

// withSeq remembers the final chunk's sequence number in front of its
// body; finish takes it off again.
func withSeq(body []byte, seq int) []byte {
	return append([]byte(strconv.Itoa(seq)+"\n"), body...)
}

func splitSeq(b []byte) (string, []byte) {
	s, rest, _ := strings.Cut(string(b), "\n")
	return s, []byte(rest)
}

// embed runs the embed items of a batch as one /api/embed call and gives
// each caller its own vectors.
func (w *Worker) embed(ctx context.Context, items []job.Item) ([]answer, error) {
	var all []string
	counts := make([]int, len(items))
	var first *request.Request
	for i, it := range items {
		r, err := w.prepare(it)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = r
		}
		in, _ := request.EmbedInputs(r.Embed)
		counts[i] = len(in)
		all = append(all, in...)
	}
	req := *first.Embed
	req.Input = all
	resp, err := w.ollama.Embed(ctx, &req)
	if err != nil {
		return nil, err
	}
	if len(resp.Embeddings) != len(all) {
		return nil, fmt.Errorf("ollama returned %d embeddings for %d inputs", len(resp.Embeddings), len(all))
	}
	out := make([]answer, len(items))
	at := 0
	for i, n := range counts {
		own := *resp
		own.Embeddings = resp.Embeddings[at : at+n]
		if len(all) > 0 {
			own.PromptEvalCount = resp.PromptEvalCount * n / len(all)
		}
		at += n
		out[i].body, _ = json.Marshal(own)
	}
	return out, nil
}

// finish gives one request its final outcome: the reply, herd_results,
// herd_cache when cacheable, and the answer for its coalesced followers.
func (w *Worker) finish(ctx context.Context, br *batchRun, it job.Item, o *outcome.Outcome, final json.RawMessage) {
	w.settle(ctx, br, it, o, final, "")
}

// settle is finish that also dead-letters the request with reason
// deadLetter when that is not empty (package settle: the dead letter is
// part of the outcome, written only when this run's outcome is the one
// stored). The cache entry is written first, so a caller that asks again
// after its answer finds it. A request whose outcome cannot be stored is
// handed back for a later delivery.
func (w *Worker) settle(ctx context.Context, br *batchRun, it job.Item, o *outcome.Outcome, final json.RawMessage, deadLetter string) {
	ctx = context.WithoutCancel(ctx)
	now := time.Now()
	o.QueueMs = br.started.Sub(it.Received).Milliseconds()
	o.TotalMs = now.Sub(it.Received).Milliseconds()
	o.BatchSize = len(br.b.Items)
	o.Worker = w.cfg.ID
	o.Model = br.b.Model
	cs := br.statsOf(it.ID)
	numCtx := w.numCtx(br.b.Model)
	// An answer whose prompt filled the window was computed on its end
	// only: not what the same request gets in a larger window.
	truncated := window.Truncated(cs.prompt, numCtx)
	if o.OK() && it.Cacheable && it.Key != "" && (!truncated || it.CacheAsked) {
		if err := w.store.SaveCache(ctx, it.Key, o, it.CacheTTL); err != nil {
			w.m.cacheErrors.Inc()
			w.log.Warn("save cache", zap.String("request_id", it.ID), zap.Error(err))
		}
	}
	f := settle.Final{Item: it, Outcome: o, DeadLetter: deadLetter}
	if final != nil {
		seq, body := splitSeq(final)
		f.Chunk = body
		f.Seq, _ = strconv.Atoi(seq)
	}
	f.Event = &events.Request{At: now, Model: br.b.Model, OllamaMs: cs.ollama.Milliseconds(),
		PromptTok: cs.prompt, EvalTok: cs.eval, NumCtx: numCtx, Truncated: truncated,
		BatchSize: o.BatchSize, Worker: w.cfg.ID}
	if it.Leader {
		f.Won = func(o *outcome.Outcome) { w.announce(ctx, it, o) }
	}
	won, err := w.settler.Settle(ctx, f)
	if err != nil {
		w.log.Warn("result not stored; request handed back", zap.String("request_id", it.ID), zap.String("batch", br.b.ID), zap.Error(err))
		w.handBack(br, []job.Item{it})
		return
	}
	if !won {
		w.log.Info("request answered elsewhere; not answering again", zap.String("request_id", it.ID), zap.String("batch", br.b.ID))
		w.disown(it.ID, br)
		return
	}
	br.settledHere(it.ID)
	w.disown(it.ID, br)
	code := o.Code()
	if !o.OK() && code == "" {
		code = wire.CodeInternal
	}
	w.m.settled(br.b.Model, it, code, br.started, now, cs.prompt, cs.eval)
	if !cs.start.IsZero() {
		w.m.observeStages(it, br.stored, br.started, cs.start, cs.start.Add(cs.ollama), time.Now())
	}
	w.log.Debug("answered", zap.String("request_id", it.ID), zap.String("batch", br.b.ID), zap.Int("status", o.Status),
		zap.String("cache", o.Cache), zap.Int64("queue_ms", o.QueueMs), zap.Int64("total_ms", o.TotalMs))
}

// announce answers the requests coalesced behind a leader and releases its
// claim on the cache key (internal/coalesce).
func (w *Worker) announce(ctx context.Context, it job.Item, o *outcome.Outcome) {
	if err := w.coal.Release(ctx, it.Key, it.ClaimRevision, o); err != nil {
		w.log.Warn("announce", zap.String("request_id", it.ID), zap.Error(err))
	}
}
