// Package dispatcher takes agents' requests from HERD_REQ (and the
// herd.ask door), validates them, answers cache hits, coalesces identical
// requests across the cluster, packs the rest into per-model, per-priority
// batches and publishes them to HERD_BATCH, and only then acknowledges the
// requests.
//
// Every request JetStream acknowledged ends in exactly one of: an answer or
// error reply sent here, a batch handed to a worker, a place in a coalescing
// group answered when its leader finishes, or a dead letter.
package dispatcher
