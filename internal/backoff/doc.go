// Package backoff spreads retries out in time. herd's retry loops (the
// SDK's publish, the worker's Ollama calls and result writes, the managed
// Ollama's restarts) double their wait after each failure; Jitter draws
// the wait actually slept from that doubled one, so that many agents or
// workers that failed together (a NATS leader election, an Ollama restart)
// do not all retry in the same instant.
//
// It is a few lines rather than a library: go.mod holds no backoff
// package, and the loops keep their own doubling, caps and deadlines.
package backoff
