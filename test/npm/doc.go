// Package npm tests herd's HTTP doors with the clients agents already use:
// the official ollama and openai npm packages, unmodified and pinned in
// package.json (installed by `npm ci` in .ci/run), and curl, against herd
// up on a managed real Ollama (bin/ollama serving herd's generated
// models). The same requests sent to that Ollama directly give the shape
// (keys and framing) herd's answers must have.
package npm
