// Package e2e holds herd's integration tests: a real in-process NATS
// server, the dispatcher and workers wired as in production, the Go SDK as
// the agent, and a fake Ollama for error paths (the real Ollama tier runs
// the same paths against the pinned build).
package e2e
