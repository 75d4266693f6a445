// Package health judges whether a herd deployment is well and summarises
// what it is doing, for `herd health` and `herd status`.
//
// It has two halves. Gatherer is a thin I/O shell: it reads the state of
// NATS, JetStream (streams, consumers, buckets), the worker registrations
// and breaker decisions in herd_control, and optional Ollama endpoints into
// a Snapshot. Evaluate is pure: it turns a Snapshot and Thresholds into a
// Report of checks, each OK, Degraded or Down, and WriteStatus renders a
// Snapshot as one screen of text. Tests drive Evaluate with hand-built
// snapshots and Gatherer with a real in-process NATS server.
package health
