// Package ollamatest provides a fake Ollama HTTP server for fast, hermetic
// tests of code that talks to Ollama through github.com/ollama/ollama/api's
// Client.
//
// The fake speaks enough of Ollama's REST API (as of v0.6.5) for api.Client
// to work unchanged against it:
//
//   - POST /api/generate and POST /api/chat answer deterministically with
//     "echo: " + prompt (chat: + the content of the last user message). They
//     stream NDJSON (one chunk per word, then a final chunk with done:true,
//     done_reason and metrics) unless the request says "stream": false, in
//     which case they send a single JSON object — exactly like Ollama, whose
//     default is to stream. An empty prompt (chat: no messages) loads the
//     model and answers done_reason "load" ("unload" when keep_alive is 0).
//     A chat with tools whose last user message is "call <name>" answers a
//     call of tool <name> with arguments {"city": "Paris"} and no content,
//     as Ollama does (streaming: one chunk with the call, then done).
//   - POST /api/embed returns one deterministic, unit-length, 8-dimensional
//     vector per input (see Embedding); POST /api/embeddings is the legacy
//     single-prompt form.
//   - POST /api/show, GET /api/tags, GET /api/ps, GET /api/version and
//     GET|HEAD / answer like Ollama with synthetic but deterministic data
//     (digests: see Digest).
//   - Errors use Ollama's wire format: a non-2xx status with a
//     {"error": "..."} body. Malformed JSON and an empty body give 400, a
//     missing model 400 "model is required", an unknown model 404
//     `model "x" not found, try pulling it first`.
//
// Model names are matched like Ollama does: case-insensitively and with an
// implicit ":latest" tag, so "tiny" and "tiny:latest" are the same model.
//
// # How api.Client surfaces errors (important for error-path tests)
//
// For non-streaming helpers (Embed, Embeddings, Show, List, ListRunning,
// Version, Heartbeat) api.Client v0.6.5 returns an api.StatusError carrying
// StatusCode and ErrorMessage. For Generate and Chat it does NOT: its
// streaming reader returns errors.New(message) whenever the body has a
// non-empty "error" field, so the HTTP status is lost. That is also what
// happens against a real Ollama, so code under test must not rely on
// errors.As(err, &api.StatusError{}) for Generate/Chat failures.
//
// # Fault injection and observation
//
// Latency (WithLatency, SetLatency), per-model failures (SetFailure),
// one-shot failures (FailNext) and a gate that parks calls (Block) can be
// changed at any time, also while requests are being served. Counters
// (Calls, CallsFor, Canceled, InFlight, MaxInFlight) and recorded request
// bodies (Requests) let tests assert what the code under test sent.
//
// A Server is created with New and closed automatically by t.Cleanup; Close
// may be called earlier to simulate Ollama going away.
package ollamatest
