package managed

import (
	"context"
	"fmt"
	"time"

	"github.com/ollama/ollama/api"
)

// Preload loads model into Ollama's memory without generating: a generate
// call with an empty prompt, which Ollama answers with done_reason "load"
// once the model is ready. numCtx is the context window to load it with
// (requests with another num_ctx make Ollama reload it); 0 leaves the
// model's default. keepAlive is how long the model stays loaded when idle:
// negative for ever, 0 the server's default (OLLAMA_KEEP_ALIVE); values
// under a second count as a second, since Ollama would take them as
// "unload now". It blocks until the model is loaded or ctx ends.
//
// Errors: the client's error (for example an unknown model), or
// ErrPreload when Ollama answered without loading.
func Preload(ctx context.Context, client *api.Client, model string, numCtx int, keepAlive time.Duration) error {
	stream := false
	req := &api.GenerateRequest{Model: model, Stream: &stream}
	if numCtx > 0 {
		req.Options = map[string]any{"num_ctx": numCtx}
	}
	if keepAlive != 0 {
		if keepAlive > 0 && keepAlive < time.Second {
			keepAlive = time.Second
		}
		req.KeepAlive = &api.Duration{Duration: keepAlive}
	}
	var reason string
	if err := client.Generate(ctx, req, func(r api.GenerateResponse) error {
		reason = r.DoneReason
		return nil
	}); err != nil {
		return fmt.Errorf("managed: preload %s: %w", model, err)
	}
	if reason != "load" {
		return fmt.Errorf("%w %s: ollama answered done_reason %q, want \"load\"", ErrPreload, model, reason)
	}
	return nil
}
