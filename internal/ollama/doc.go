// Package ollama is herd's one path to Ollama: an api.Client whose HTTP
// transport keeps the status code of every error answer (the api package
// drops it for streamed calls), and the single mapping from Ollama errors
// to herd's error codes and retry decisions.
package ollama
