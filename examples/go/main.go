// Command agent is an agent in Go with herd's SDK (client/): a call, a
// durable retry under the same request id, and a streamed answer.
// NATS_URL, HERD_MODEL and HERD_AGENT choose the server, the model and
// the agent's name.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// run is the agent, printing what it got on out.
func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agent, model := env("HERD_AGENT", "go-agent"), env("HERD_MODEL", "herd-tiny")
	nc, err := nats.Connect(env("NATS_URL", nats.DefaultURL))
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithAgent(agent))
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	req := &api.GenerateRequest{Model: model, Prompt: "hello", Options: map[string]any{"num_predict": 8}}

	// A call: durable (JetStream) under an id of our own.
	id := agent + "=" + nuid.Next()
	resp, meta, err := c.Generate(ctx, req, client.At(client.High), client.RequestID(id), client.Timeout(time.Minute))
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(out, "generate: %s cache %s model %s response %q\n", id, meta.Cache, meta.Model, resp.Response)

	// The same id again (a retry after a crash): the stored outcome, not a
	// second run.
	again, _, err := c.Generate(ctx, req, client.At(client.High), client.RequestID(id))
	if err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	if again.Response != resp.Response {
		return fmt.Errorf("retry answered %q, want the stored %q", again.Response, resp.Response)
	}
	fmt.Fprintf(out, "retry: same answer for %s\n", id)

	// Streaming: Ollama's chunks in order.
	chunks, text := 0, ""
	sreq := &api.GenerateRequest{Model: model, Prompt: "tell me a story", Options: map[string]any{"num_predict": 12}}
	if _, err := c.GenerateStream(ctx, sreq, func(r api.GenerateResponse) error {
		chunks++
		text += r.Response
		return nil
	}); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	fmt.Fprintf(out, "stream: %d chunks, text %q\n", chunks, text)
	return nil
}
