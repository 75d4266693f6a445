// Package pool runs `herd up`'s worker instances on one host: each a
// worker with its own managed Ollama, pinned to its own cores, started and
// stopped so that their number follows the optimizer's instances decision
// (herd_control key instances, policy.Scaler) within the host's cores and
// the pool's bounds, or stays at a fixed count.
//
// Plan is the pure core: the decision, the cores and the bounds in, the
// target set of instances and their core sets out, with what to start and
// what to stop and why. Pool is the thin shell that applies it: it watches
// the decision, starts instances through a StartFunc (Workers builds the
// real one) and drains the ones it removes: the worker stops fetching,
// finishes its batches within worker.drain_timeout (what is still running
// then is handed back to JetStream, so another instance runs it), and only
// then is its Ollama stopped.
package pool
