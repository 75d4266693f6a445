// Package worker runs batches from HERD_BATCH on Ollama within a CPU
// budget: at most Slots calls at once (some kept for high priority), with
// num_thread set to the budget. It answers each request on its reply
// subject, stores answers in herd_results (and herd_cache when cacheable),
// answers coalesced followers, and acknowledges a batch only when every
// request in it has its final outcome.
package worker
