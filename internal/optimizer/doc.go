// Package optimizer is the service that watches herd's metrics stream and
// retunes the running system through decisions in herd_control.
//
// This slice decides per-model circuit breakers. A durable consumer
// ("optimizer") reads herd.metrics.call.> and herd.metrics.req.> from
// HERD_METRICS, new messages only. Every Ollama call attempt a worker reports
// feeds the model's breaker (internal/breaker): a success, or a failure when
// its code is backend_unavailable, internal or model_not_found; other codes
// (invalid_request: the caller's fault) are not the model's outcome and are
// left out. A failure counts once per request (events.Call.Request) within
// the breaker window (repeats.go): a poison request's retries and
// redeliveries are one failure, so a breaker judges the model, not one
// request; events without a request (older workers) count each. Request
// outcomes feed sliding windows (internal/window). A timer moves open
// breakers to half-open when their cool-down ends.
//
// Each breaker transition is written to herd_control under
// control.BreakerKey(model), where dispatchers watch it (open: fail fast with
// 503 breaker_open, or route to the configured fallback), announced with the
// same JSON on herd.events.breaker.<encoded model>, logged, and counted in
// herd_optimizer_decisions_total; herd_optimizer_breaker_state says each
// model's state.
//
// Worker heartbeat events (herd.metrics.worker.<id>: each model's running and
// waiting calls, the host's memory, Ollama's loaded models) and the batches
// waiting in HERD_BATCH feed the fleet decisions of every tick (fleet.go):
// the allocation of the fleet's slots between models (policy.Budgeter,
// control.BudgetKey), the recommended number of worker instances
// (policy.Scaler, control.InstancesKey), each model's keep_alive from the gaps
// between its requests (policy.KeepAlive, control.KeepAliveKey) and, per
// worker, the idle models to unload when its host's memory is tight
// (policy.Unload, control.UnloadKey) and the models to load shortly before
// the next burst their arrival rhythm predicts (policy.PreloadByRhythm,
// control.PreloadKey; preload.go). Each is written to herd_control,
// announced on herd.events.<kind>[.<model>] (EventSubject), logged with its
// reason and numbers, and shown in gauges; workers apply them through KV
// watches. Service.Decisions returns those in force.
//
// Performance builds the one-shot report of `optimizer --once --performance`
// from the request events of a recent window, without deciding anything.
package optimizer
