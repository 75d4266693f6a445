package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/internal/job"
	"github.com/sutazai/herd/internal/reqmetrics"
	"github.com/sutazai/herd/internal/wire"
)

type metrics struct {
	requests    *prometheus.CounterVec
	calls       *prometheus.CounterVec
	callSeconds *prometheus.HistogramVec
	batches     prometheus.Counter
	deadLetters prometheus.Counter
	slots       prometheus.Gauge
	numCtxAbove *prometheus.CounterVec
	truncated   *prometheus.CounterVec
	budget      prometheus.Gauge
	tokens      *prometheus.CounterVec
	numCtx      *prometheus.GaugeVec
	modelCores  *prometheus.GaugeVec
	modelSlots  *prometheus.GaugeVec
	keepAlive   *prometheus.GaugeVec
	unloads     *prometheus.CounterVec
	stages      *prometheus.HistogramVec
	resultsFull prometheus.Counter
	cacheErrors prometheus.Counter
	req         *reqmetrics.Metrics
}

// Stages of a request's path that herd_worker_stage_seconds measures, in
// order: queued (stored in HERD_REQ until a dispatcher took it), dispatch
// (until its batch was stored in HERD_BATCH), handoff (until this worker
// fetched the batch), slot (waiting for a slot), ollama (the call), settle
// (storing the outcome and replying).
var stages = []string{"queued", "dispatch", "handoff", "slot", "ollama", "settle"}

func newMetrics(reg prometheus.Registerer, id string) *metrics {
	labels := prometheus.Labels{"worker": id}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_worker_requests_total", Help: "Requests answered by the worker, by model, priority and outcome (ok or the error reply's code).", ConstLabels: labels,
		}, []string{"model", "priority", reqmetrics.OutcomeLabel}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_worker_ollama_calls_total", Help: "Ollama calls, by model, op and outcome (ok or the error code the call's failure maps to).", ConstLabels: labels,
		}, []string{"model", "op", reqmetrics.OutcomeLabel}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herd_worker_ollama_call_seconds", Help: "Ollama call latency.", ConstLabels: labels,
			Buckets: reqmetrics.Buckets,
		}, []string{"model", "op"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_worker_batches_total", Help: "Batches taken from HERD_BATCH.", ConstLabels: labels,
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_worker_dead_letters_total", Help: "Requests moved to HERD_DLQ after failing on every delivery.", ConstLabels: labels,
		}),
		numCtxAbove: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_worker_num_ctx_above_model_total", Help: "Requests that asked for a larger num_ctx than their model's; they run in the model's window.", ConstLabels: labels,
		}, []string{"model"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_worker_truncated_prompts_total", Help: "Prompts that filled their model's context window (Ollama kept only their end).", ConstLabels: labels,
		}, []string{"model"}),
		slots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_worker_slots", Help: "Ollama calls the worker may run at once.", ConstLabels: labels,
		}),
		budget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_worker_cpu_budget_cores", Help: "Cores the worker may keep busy (Ollama num_thread).", ConstLabels: labels,
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_worker_tokens_total", Help: "Tokens of answered requests as Ollama counted them, by model and kind (prompt: prompt_eval_count, eval: eval_count).", ConstLabels: labels,
		}, []string{"model", "kind"}),
		numCtx: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_worker_num_ctx", Help: "Context window (num_ctx, tokens) each served model runs in; models left to Ollama's default are not listed.", ConstLabels: labels,
		}, []string{"model"}),
		modelCores: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_worker_model_cpu_budget_cores", Help: "Cores of this worker's CPU budget each served model may use (num_thread of its calls).", ConstLabels: labels,
		}, []string{"model"}),
		modelSlots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_worker_model_slots", Help: "Calls of each model this worker runs at once at most (its share of the optimizer's budget); models without a share are not listed.", ConstLabels: labels,
		}, []string{"model"}),
		keepAlive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_worker_model_keep_alive_seconds", Help: "keep_alive the worker sends with each model's calls, as the optimizer decided (negative: kept loaded).", ConstLabels: labels,
		}, []string{"model"}),
		resultsFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_worker_results_full_total", Help: "Outcomes sent without being stored because herd_results was full (no recovery by id for them).", ConstLabels: labels,
		}),
		cacheErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_worker_cache_write_errors_total", Help: "Answers not cached because herd_cache refused the write (full, or unavailable): herd runs on without the cache.", ConstLabels: labels,
		}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herd_worker_stage_seconds", Help: "Time answered requests spent in each stage of their path: queued, dispatch, handoff, slot, ollama, settle.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 26), // 50µs .. ~28 min (the ollama stage of a CPU generation)
		}, []string{"stage"}),
		unloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_worker_unloads_total", Help: "Models unloaded from Ollama on the optimizer's decision (memory tight).", ConstLabels: labels,
		}, []string{"model"}),
		// Shared with the dispatcher: see internal/reqmetrics.
		req: reqmetrics.New(reg),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.calls, m.callSeconds, m.batches, m.deadLetters, m.slots, m.budget, m.numCtxAbove, m.truncated, m.tokens, m.numCtx, m.modelCores, m.modelSlots, m.keepAlive, m.unloads, m.stages, m.resultsFull, m.cacheErrors)
	}
	return m
}

func (m *metrics) observeCall(model, op string, code wire.Code, d time.Duration) {
	m.calls.WithLabelValues(model, op, reqmetrics.Outcome(code)).Inc()
	m.callSeconds.WithLabelValues(model, op).Observe(d.Seconds())
}

// settled records the final outcome of it (an answer, code "", or an
// error reply with code), which ran from started and was answered at now
// with the token counts of its Ollama call (zero when it
// did not run).
func (m *metrics) settled(model string, it job.Item, code wire.Code, started, now time.Time, prompt, eval int) {
	m.requests.WithLabelValues(model, string(it.Priority), reqmetrics.Outcome(code)).Inc()
	m.req.Observe(string(it.Priority), model, string(it.Op), code, started.Sub(it.Received), now.Sub(it.Received))
	if prompt > 0 {
		m.tokens.WithLabelValues(model, "prompt").Add(float64(prompt))
	}
	if eval > 0 {
		m.tokens.WithLabelValues(model, "eval").Add(float64(eval))
	}
}

// served reports the window and the CPU budget of each served model.
func (m *metrics) served(models map[string]string, numCtx map[string]int, cores func(string) int) {
	for model := range models {
		m.modelCores.WithLabelValues(model).Set(float64(cores(model)))
		if n := numCtx[model]; n > 0 {
			m.numCtx.WithLabelValues(model).Set(float64(n))
		}
	}
}

// observeStages records the stages of a request answered here (stages):
// stored in HERD_REQ at it.Received, pulled at it.Pulled, its batch stored
// at batchStored and fetched at fetched, its call from callStart to
// callEnd, settled at settled. Stages with a missing time are left out.
func (m *metrics) observeStages(it job.Item, batchStored, fetched, callStart, callEnd, settled time.Time) {
	marks := []time.Time{it.Received, it.Pulled, batchStored, fetched, callStart, callEnd, settled}
	for i, stage := range stages {
		a, b := marks[i], marks[i+1]
		if a.IsZero() || b.IsZero() || b.Before(a) {
			continue
		}
		m.stages.WithLabelValues(stage).Observe(b.Sub(a).Seconds())
	}
}
