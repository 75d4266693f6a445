package e2e

import (
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
)

func TestGenerateChatEmbed(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client(client.WithAgent("t1"))
	ctx := t.Context()
	g, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "hello there"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Response != "echo: hello there" || !g.Done {
		t.Fatalf("generate = %+v", g)
	}
	if meta.Status != 200 || meta.Cache != "miss" || meta.Worker != "w1" || meta.RequestID == "" {
		t.Fatalf("meta = %+v", meta)
	}
	ch, _, err := c.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi chat"}}})
	if err != nil || ch.Message.Content != "echo: hi chat" {
		t.Fatalf("chat = %+v, %v", ch, err)
	}
	e, _, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: []string{"a", "b"}})
	if err != nil || len(e.Embeddings) != 2 {
		t.Fatalf("embed = %+v, %v", e, err)
	}
	var chunks []string
	_, err = c.GenerateStream(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "one two three"}, func(r api.GenerateResponse) error {
		chunks = append(chunks, r.Response)
		return nil
	}, client.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 3 {
		t.Fatalf("stream chunks = %q", chunks)
	}
}

// TestRetrySameID: a caller that retries with the same request id (here a
// new process, with a new inbox) runs the request once and finds the
// answer in herd_results.
func TestRetrySameID(t *testing.T) {
	s := newStack(t, stackOpts{})
	first := s.client(client.WithAgent("a"))
	r1, m1, err := first.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "once"}, client.RequestID("fixed-id-1"))
	if err != nil {
		t.Fatal(err)
	}
	again := s.client(client.WithAgent("a"))
	r2, m2, err := again.Generate(t.Context(), &api.GenerateRequest{Model: "tiny", Prompt: "once"}, client.RequestID("fixed-id-1"))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Response != r2.Response || m1.RequestID != m2.RequestID || m2.Status != 200 {
		t.Fatalf("retry got %+v %+v, first %+v %+v", r2, m2, r1, m1)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Fatalf("ollama calls = %d, want 1: a retry with the same id must not run again", n)
	}
}
