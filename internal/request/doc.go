// Package request decodes and validates an agent's request body (the JSON
// Ollama's /api/generate, /api/chat or /api/embed accepts, plus "op") and
// computes its cache key. It is pure: no I/O, no clock.
package request
