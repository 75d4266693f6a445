// Package optimizer is the service that watches herd's metrics stream and
// retunes the running system through decisions in herd_control.
//
// This slice decides per-model circuit breakers. A durable consumer
// ("optimizer") reads herd.metrics.call.> and herd.metrics.req.> from
// HERD_METRICS, new messages only. Every Ollama call attempt a worker reports
// feeds the model's breaker (internal/breaker): a success, or a failure when
// its code is backend_unavailable, internal or model_not_found; other codes
// (invalid_request: the caller's fault) are not the model's outcome and are
// left out. Request outcomes feed sliding windows (internal/window). A timer
// moves open breakers to half-open when their cool-down ends.
//
// Each breaker transition is written to herd_control under
// control.BreakerKey(model), where dispatchers watch it (open: fail fast with
// 503 breaker_open, or route to the configured fallback), announced with the
// same JSON on herd.events.breaker.<encoded model>, logged, and counted in
// herd_optimizer_decisions_total; herd_optimizer_breaker_state says each
// model's state.
//
// Performance builds the one-shot report of `optimizer --once --performance`
// from the request events of a recent window, without deciding anything.
package optimizer
