// Package window keeps sliding windows of request observations per key
// (model, priority) and answers, at a time the caller passes, what the
// optimizer decides from: latency percentiles (total and queue wait),
// throughput, error rate, tokens per second, prompt-token percentiles and
// truncations (for num_ctx), cache hit ratio and inter-arrival gaps (for
// keep-alive), plus queue depth and age gauges that are set rather than
// observed.
//
// It is pure: no I/O and no clock reads. Each observation carries its own
// time, and every query takes now. A window of Config.Window is kept in
// Config.Buckets slices aligned to multiples of Window/Buckets; a query at
// now covers the slice holding now and the Buckets-1 before it, so it
// reaches between Window-Window/Buckets and Window back. Slices older than
// that are ignored by queries and reused by newer observations, so nothing
// needs to run for data to expire; Advance only gives memory back.
//
// Latencies and prompt sizes go into HDR histograms
// (github.com/HdrHistogram/hdrhistogram-go): latencies from 1µs to 10min,
// prompts from 1 to 2 million tokens, larger values clamped to the top. The
// default precision is 2 significant figures (quantiles within 1%), not 3:
// a 3-figure latency histogram over that range takes 172 KB, which is
// about 5 MB per busy key with two latency histograms in 12 slices, against
// 0.7 MB with 2 figures, and 1% is finer than any decision made from it.
// Config.SignificantFigures sets it.
//
// Observation classes (see Obs):
//   - rejected: herd refused it without trying the model (queue_full,
//     breaker_open). Counted, but not in latency, errors or tokens.
//   - failed: the model failed to answer (see Obs.Failed). An error.
//   - ran: served by an Ollama call (not rejected, not a cache hit or
//     coalesced answer). Only these feed tokens, Ollama time, prompt
//     percentiles and truncations.
package window
