package e2e

import (
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
)

// TestChatToolCalls: a chat with tools that Ollama answers with a tool call
// (a chunk with tool_calls and no content when streaming) gives the agent
// the call, streamed or not, and the stored answer keeps it: the same
// request answered from the cache still carries the call. Before, the
// worker dropped chunks without content and kept only the final chunk's
// message, so a streaming agent never saw the call and a cache hit lost it.
func TestChatToolCalls(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client(client.WithAgent("tools"))
	ctx := t.Context()
	tools := api.Tools{{Type: "function", Function: api.ToolFunction{Name: "weather", Description: "the weather in a city"}}}
	req := func() *api.ChatRequest {
		return &api.ChatRequest{Model: "tiny", Tools: tools, Options: map[string]any{"temperature": 0},
			Messages: []api.Message{{Role: "user", Content: "call weather"}}}
	}
	wantCall := func(what string, calls []api.ToolCall) {
		t.Helper()
		if len(calls) != 1 || calls[0].Function.Name != "weather" || calls[0].Function.Arguments["city"] != "Paris" {
			t.Fatalf("%s: tool calls %+v, want one call of weather(city: Paris)", what, calls)
		}
	}

	var streamed []api.ToolCall
	var chunks int
	meta, err := c.ChatStream(ctx, req(), func(r api.ChatResponse) error {
		chunks++
		streamed = append(streamed, r.Message.ToolCalls...)
		return nil
	}, client.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantCall("streamed", streamed)
	if chunks != 2 || meta.Cache != "miss" {
		t.Fatalf("%d chunks (cache %s), want the call's chunk and the final one, from Ollama", chunks, meta.Cache)
	}

	r, meta, err := c.Chat(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	if meta.Cache != "hit" {
		t.Fatalf("the same request answered with cache %q, want a hit", meta.Cache)
	}
	wantCall("from the cache", r.Message.ToolCalls)

	r, meta, err = c.Chat(ctx, req(), client.Cache("off"))
	if err != nil {
		t.Fatal(err)
	}
	wantCall("not streamed", r.Message.ToolCalls)
	if meta.Cache != "miss" {
		t.Fatalf("cache %q with the cache off", meta.Cache)
	}
}
