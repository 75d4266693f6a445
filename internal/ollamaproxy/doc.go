// Package ollamaproxy is a reverse proxy for tests that stands between
// herd's workers and a real Ollama and records every call: its path and
// body, the status and body bytes the worker got, and how it ended (done,
// closed by the worker, dropped because Ollama failed). When Ollama fails
// before answering, the proxy drops the worker's connection, as Ollama
// itself dying would.
//
// A Hook sees each call before Ollama does and may answer it itself (a
// fault suite's 503, a poison prompt) or drop it; URLFor gives each worker
// its own base URL so that its calls are told apart.
package ollamaproxy
