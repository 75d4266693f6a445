// Package gateway is herd's HTTP doors: Ollama's HTTP API and the OpenAI API
// in front of herd's ask door (herd.ask.<priority>.<agent>), so that
// existing Ollama and OpenAI clients use herd by changing one URL.
//
// The gateway is a NATS client and keeps no state of its own: any number
// of them can run behind a load balancer. Each HTTP call is one ask, under
// the request id <agent>=<Idempotency-Key> when the caller gives a key (a
// retry under the same key gets the one stored outcome, never a second
// run), else <agent>=gw-<random>. Streamed chunks (Herd-Seq) become NDJSON
// lines (Ollama) or server-sent events (OpenAI); herd's facts become
// X-Herd-* headers (trailers on a stream); herd's error codes become HTTP
// statuses and, on the OpenAI door, OpenAI's error shape.
//
// The translations are pure functions (openai.go, caller.go, status.go,
// keys.go), tested with tables; the HTTP and NATS shells (gateway.go,
// ask.go, handlers) stay thin.
//
// Why the OpenAI wire types are written here: the only Go types that match
// what Ollama's own OpenAI layer accepts and returns live in
// github.com/ollama/ollama/openai, which imports gin (and its validator,
// codecs and more) into any program that uses them; openai-go's types are a
// client's parameter builders (param.Opt wrappers), not a server's decoding
// targets. So the types in openai.go follow Ollama v0.6.5's openai package
// field by field, and the conversions follow its approach, plus
// max_completion_tokens, base64 embeddings and OpenAI's error types.
package gateway
