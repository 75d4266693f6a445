// Package breaker keeps a circuit breaker per model, so that a failing
// model fails fast (503 breaker_open, retryable) or goes to its fallback
// model, and never slows the others.
//
// A breaker is closed until, over the last Config.Window, at least
// Config.MinRequests outcomes were recorded and the failed share reached
// Config.ErrorRate, or until Config.ConsecutiveFailures outcomes in a row
// failed. Then it is open: every request is rejected for Config.CoolDown.
// Then it is half-open: up to Config.HalfOpenProbes requests at a time go
// through as probes; when that many have succeeded it closes, and the
// first failure opens it again for another cool-down. Every change of
// state is returned as a Transition with its reason and the numbers behind
// it, for the caller to announce.
//
// The package is pure: no I/O and no clock reads; every call takes now.
// The closed-state window is kept in 10 slices of Window/10, so it reaches
// between 0.9 and 1 Window back.
//
// Why not github.com/sony/gobreaker/v2: its state machine reads time.Now
// inside every call (it has no clock to inject), so it cannot be driven by
// the times in herd's metric events nor tested with a fake clock without
// sleeping; its OnStateChange callback gets neither the time nor the
// counts that caused the change (they are already cleared); and it only
// knows outcomes of requests it let through itself (Execute, or
// TwoStepCircuitBreaker's done callback), while herd's optimizer learns
// outcomes from the metrics stream, apart from any Allow. The state
// machine here is about as small as the adapter would have been.
package breaker
