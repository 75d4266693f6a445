package ollamatest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/ollamatest"
)

func ptr[T any](v T) *T { return &v }

// eventually polls cond until it holds or a generous deadline passes; the
// server notices client disconnects asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// statusOf returns the HTTP status carried by err, or 0 if it is not an
// api.StatusError.
func statusOf(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

// rawPost posts body to path and returns the status and decoded "error".
func rawPost(t *testing.T, s *ollamatest.Server, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(s.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", b, err)
	}
	return resp.StatusCode, e.Error
}

func TestGenerateNonStreaming(t *testing.T) {
	s := ollamatest.New(t)
	var got []api.GenerateResponse
	err := s.Client().Generate(context.Background(), &api.GenerateRequest{
		Model: "tiny", Prompt: "hello big world", Stream: ptr(false),
	}, func(r api.GenerateResponse) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d responses, want 1", len(got))
	}
	r := got[0]
	if r.Response != "echo: hello big world" || !r.Done || r.DoneReason != "stop" || r.Model != "tiny" {
		t.Errorf("response = %+v", r)
	}
	if r.PromptEvalCount != 3 || r.EvalCount != 4 {
		t.Errorf("prompt_eval_count=%d eval_count=%d, want 3 and 4", r.PromptEvalCount, r.EvalCount)
	}
	if r.CreatedAt.IsZero() || r.TotalDuration <= 0 || r.EvalDuration <= 0 {
		t.Errorf("missing timing fields: %+v", r.Metrics)
	}
}

func TestGenerateStreaming(t *testing.T) {
	s := ollamatest.New(t)
	var got []api.GenerateResponse
	// Stream unset: Ollama's default is to stream.
	err := s.Client().Generate(context.Background(), &api.GenerateRequest{
		Model: "small", Prompt: "one  two\nthree",
	}, func(r api.GenerateResponse) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"echo:", " one", "  two", "\nthree", ""}
	if len(got) != len(want) {
		t.Fatalf("got %d chunks, want %d: %+v", len(got), len(want), got)
	}
	var text strings.Builder
	for i, r := range got {
		if r.Response != want[i] {
			t.Errorf("chunk %d = %q, want %q", i, r.Response, want[i])
		}
		if last := i == len(got)-1; r.Done != last {
			t.Errorf("chunk %d done = %v", i, r.Done)
		}
		text.WriteString(r.Response)
	}
	if text.String() != "echo: one  two\nthree" {
		t.Errorf("joined = %q", text.String())
	}
	final := got[len(got)-1]
	if final.DoneReason != "stop" || final.PromptEvalCount != 3 || final.EvalCount != 4 || final.TotalDuration <= 0 {
		t.Errorf("final chunk = %+v", final)
	}
}

func TestGenerateOptions(t *testing.T) {
	s := ollamatest.New(t)
	gen := func(opts map[string]any) api.GenerateResponse {
		t.Helper()
		var out api.GenerateResponse
		err := s.Client().Generate(context.Background(), &api.GenerateRequest{
			Model: "tiny", Prompt: "a b c", Stream: ptr(false), Options: opts,
		}, func(r api.GenerateResponse) error { out = r; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if r := gen(map[string]any{"seed": 42}); r.Response != "echo: a b c [seed=42]" {
		t.Errorf("seeded = %q", r.Response)
	}
	if r := gen(map[string]any{"seed": 42, "temperature": 0}); r.Response != "echo: a b c" {
		t.Errorf("greedy = %q", r.Response)
	}
	if r := gen(map[string]any{"num_predict": 2}); r.Response != "echo: a" || r.DoneReason != "length" || r.EvalCount != 2 {
		t.Errorf("truncated = %+v", r)
	}
	// An empty prompt only loads the model, like Ollama.
	if r := s.Client().Generate(context.Background(), &api.GenerateRequest{Model: "tiny"}, func(r api.GenerateResponse) error {
		if !r.Done || r.DoneReason != "load" || r.Response != "" {
			t.Errorf("load response = %+v", r)
		}
		return nil
	}); r != nil {
		t.Fatal(r)
	}
}

func TestChat(t *testing.T) {
	s := ollamatest.New(t)
	msgs := []api.Message{
		{Role: "system", Content: "be brief"},
		{Role: "user", Content: "first question"},
		{Role: "assistant", Content: "answer"},
		{Role: "user", Content: "second question"},
	}
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprint("stream=", stream), func(t *testing.T) {
			var text strings.Builder
			var final api.ChatResponse
			n := 0
			err := s.Client().Chat(context.Background(), &api.ChatRequest{
				Model: "big", Messages: msgs, Stream: ptr(stream),
			}, func(r api.ChatResponse) error {
				n++
				if r.Message.Role != "assistant" {
					t.Errorf("role = %q", r.Message.Role)
				}
				text.WriteString(r.Message.Content)
				final = r
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if text.String() != "echo: second question" {
				t.Errorf("content = %q", text.String())
			}
			if wantN := map[bool]int{false: 1, true: 4}[stream]; n != wantN {
				t.Errorf("got %d responses, want %d", n, wantN)
			}
			if !final.Done || final.DoneReason != "stop" || final.EvalCount != 3 || final.PromptEvalCount != 7 {
				t.Errorf("final = %+v", final)
			}
		})
	}
}

func TestEmbed(t *testing.T) {
	s := ollamatest.New(t)
	inputs := []string{"alpha", "beta", "gamma delta"}
	resp, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Model: "tiny", Input: inputs})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Embeddings) != 3 || resp.Model != "tiny" || resp.PromptEvalCount != 4 || resp.TotalDuration <= 0 {
		t.Fatalf("resp = %+v", resp)
	}
	seen := map[string]bool{}
	for i, v := range resp.Embeddings {
		if len(v) != ollamatest.EmbeddingDims {
			t.Fatalf("vector %d has %d dims", i, len(v))
		}
		var norm float64
		for j, x := range v {
			norm += float64(x) * float64(x)
			if want := ollamatest.Embedding(inputs[i])[j]; x != want {
				t.Errorf("vector %d[%d] = %v, want %v", i, j, x, want)
			}
		}
		if math.Abs(norm-1) > 1e-5 {
			t.Errorf("vector %d norm² = %v", i, norm)
		}
		seen[fmt.Sprint(v)] = true
	}
	if len(seen) != 3 {
		t.Errorf("vectors are not distinct: %v", resp.Embeddings)
	}

	one, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Model: "tiny", Input: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Embeddings) != 1 || fmt.Sprint(one.Embeddings[0]) != fmt.Sprint(resp.Embeddings[0]) {
		t.Errorf("single input gave %v", one.Embeddings)
	}

	legacy, err := s.Client().Embeddings(context.Background(), &api.EmbeddingRequest{Model: "tiny", Prompt: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if len(legacy.Embedding) != ollamatest.EmbeddingDims || float32(legacy.Embedding[0]) != resp.Embeddings[0][0] {
		t.Errorf("legacy embedding = %v", legacy.Embedding)
	}

	if code, msg := rawPost(t, s, "/api/embed", `{"model":"tiny","input":[1,2]}`); code != 400 || msg != "invalid input type" {
		t.Errorf("bad input: %d %q", code, msg)
	}
}

func TestUnknownModel(t *testing.T) {
	s := ollamatest.New(t, ollamatest.WithModels("only"))
	const want = `model "nope" not found, try pulling it first`
	ctx := context.Background()

	_, err := s.Client().Embed(ctx, &api.EmbedRequest{Model: "nope", Input: "x"})
	if statusOf(err) != http.StatusNotFound || err.Error() != want {
		t.Errorf("embed err = %#v", err)
	}
	_, err = s.Client().Show(ctx, &api.ShowRequest{Model: "tiny"}) // a default model, but not configured here
	if statusOf(err) != http.StatusNotFound {
		t.Errorf("show err = %#v", err)
	}

	// api.Client's streaming reader turns an {"error": ...} body into a plain
	// error (also against real Ollama): the message survives, the status
	// does not. Check the status on the wire.
	err = s.Client().Generate(ctx, &api.GenerateRequest{Model: "nope", Prompt: "hi"}, func(api.GenerateResponse) error { return nil })
	if err == nil || err.Error() != want {
		t.Errorf("generate err = %v", err)
	}
	err = s.Client().Chat(ctx, &api.ChatRequest{Model: "nope", Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(api.ChatResponse) error { return nil })
	if err == nil || err.Error() != want {
		t.Errorf("chat err = %v", err)
	}
	if code, msg := rawPost(t, s, "/api/generate", `{"model":"nope","prompt":"hi"}`); code != 404 || msg != want {
		t.Errorf("raw generate: %d %q", code, msg)
	}

	// Names match like Ollama: implicit :latest, case-insensitive.
	for _, name := range []string{"only", "only:latest", "ONLY"} {
		if _, err := s.Client().Embed(ctx, &api.EmbedRequest{Model: name, Input: "x"}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got := s.CallsFor("embed", "only"); got != 3 {
		t.Errorf("CallsFor(embed, only) = %d, want 3", got)
	}
}

func TestBadRequests(t *testing.T) {
	s := ollamatest.New(t)
	for _, tc := range []struct{ path, body, want string }{
		{"/api/generate", `{"model":`, "unexpected end of JSON input"},
		{"/api/chat", `not json`, ""},
		{"/api/embed", ``, "missing request body"},
		{"/api/generate", `{"prompt":"hi"}`, "model is required"},
		{"/api/chat", `{"messages":[]}`, "model is required"},
		{"/api/show", `{}`, "model is required"},
	} {
		code, msg := rawPost(t, s, tc.path, tc.body)
		if code != http.StatusBadRequest || msg == "" || (tc.want != "" && msg != tc.want) {
			t.Errorf("%s %q: %d %q", tc.path, tc.body, code, msg)
		}
	}
	_, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Input: "x"})
	if statusOf(err) != http.StatusBadRequest || err.Error() != "model is required" {
		t.Errorf("embed without model: %#v", err)
	}
	resp, err := http.Get(s.URL + "/api/generate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /api/generate = %d, want 404 like gin", resp.StatusCode)
	}
}

func TestSetFailure(t *testing.T) {
	s := ollamatest.New(t)
	ctx := context.Background()
	c := s.Client()
	s.SetFailure("small", http.StatusServiceUnavailable, "overloaded")

	_, err := c.Embed(ctx, &api.EmbedRequest{Model: "small", Input: "x"})
	if statusOf(err) != http.StatusServiceUnavailable || err.Error() != "overloaded" {
		t.Errorf("embed err = %#v", err)
	}
	err = c.Generate(ctx, &api.GenerateRequest{Model: "small:latest", Prompt: "x"}, func(api.GenerateResponse) error { return nil })
	if err == nil || err.Error() != "overloaded" {
		t.Errorf("generate err = %v", err)
	}
	if code, _ := rawPost(t, s, "/api/chat", `{"model":"small","messages":[{"role":"user","content":"x"}]}`); code != 503 {
		t.Errorf("raw chat status = %d", code)
	}
	// Other models are unaffected.
	if _, err := c.Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: "x"}); err != nil {
		t.Errorf("tiny: %v", err)
	}
	s.SetFailure("small", http.StatusInternalServerError, "")
	if _, err := c.Embed(ctx, &api.EmbedRequest{Model: "small", Input: "x"}); statusOf(err) != 500 {
		t.Errorf("after 500: %#v", err)
	}
	s.SetFailure("small", 0, "")
	if _, err := c.Embed(ctx, &api.EmbedRequest{Model: "small", Input: "x"}); err != nil {
		t.Errorf("after clear: %v", err)
	}
}

func TestFailNext(t *testing.T) {
	s := ollamatest.New(t)
	ctx := context.Background()
	s.FailNext(2, http.StatusServiceUnavailable)
	for i, m := range []string{"tiny", "big"} {
		_, err := s.Client().Embed(ctx, &api.EmbedRequest{Model: m, Input: "x"})
		if statusOf(err) != 503 || !strings.Contains(err.Error(), "server busy") {
			t.Errorf("call %d: %#v", i, err)
		}
	}
	if _, err := s.Client().Embed(ctx, &api.EmbedRequest{Model: "tiny", Input: "x"}); err != nil {
		t.Errorf("third call: %v", err)
	}
}

func TestBlockAndCancel(t *testing.T) {
	s := ollamatest.New(t)
	release := s.Block()
	defer release()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- s.Client().Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x"}, func(api.GenerateResponse) error { return nil })
	}()
	eventually(t, "the call to be parked", func() bool { return s.InFlight() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	eventually(t, "Canceled() == 1", func() bool { return s.Canceled() == 1 })
	eventually(t, "InFlight() == 0", func() bool { return s.InFlight() == 0 })

	// Parked calls proceed on release.
	done := make(chan error, 1)
	go func() {
		_, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Model: "tiny", Input: "x"})
		done <- err
	}()
	eventually(t, "the embed to be parked", func() bool { return s.InFlight() == 1 })
	select {
	case err := <-done:
		t.Fatalf("embed finished while blocked: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Canceled() != 1 {
		t.Errorf("Canceled() = %d, want 1", s.Canceled())
	}
}

func TestMaxInFlight(t *testing.T) {
	s := ollamatest.New(t)
	release := s.Block()
	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.Client().Chat(context.Background(), &api.ChatRequest{
				Model: "tiny", Messages: []api.Message{{Role: "user", Content: fmt.Sprint(i)}},
			}, func(api.ChatResponse) error { return nil })
		})
	}
	eventually(t, "all calls parked", func() bool { return s.InFlight() == n })
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := s.MaxInFlight(); got != n {
		t.Errorf("MaxInFlight() = %d, want %d", got, n)
	}
	if got := s.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after completion", got)
	}
}

func TestLatency(t *testing.T) {
	s := ollamatest.New(t, ollamatest.WithLatency(50*time.Millisecond))
	start := time.Now()
	if _, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Model: "tiny", Input: "x"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("call took %v, want >= 50ms", d)
	}

	s.SetLatency(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := s.Client().Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x"}, func(api.GenerateResponse) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	eventually(t, "Canceled() == 1", func() bool { return s.Canceled() == 1 })

	s.SetLatency(0)
	start = time.Now()
	if _, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Model: "tiny", Input: "x"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second { // the 1-minute latency is gone
		t.Errorf("call without latency took %v", d)
	}
}

func TestCountersAndRequests(t *testing.T) {
	s := ollamatest.New(t)
	ctx := context.Background()
	c := s.Client()
	nop := func(api.GenerateResponse) error { return nil }
	for _, p := range []string{"p1", "p2"} {
		if err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: p}, nop); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Generate(ctx, &api.GenerateRequest{Model: "big", Prompt: "p3"}, nop); err != nil {
		t.Fatal(err)
	}
	_ = c.Generate(ctx, &api.GenerateRequest{Model: "missing", Prompt: "p4"}, nop)
	rawPost(t, s, "/api/generate", `{bad`)
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}

	if got := s.Calls("generate"); got != 5 {
		t.Errorf("Calls(generate) = %d, want 5", got)
	}
	if got := s.Calls("tags"); got != 1 {
		t.Errorf("Calls(tags) = %d, want 1", got)
	}
	if got := s.Calls("chat"); got != 0 {
		t.Errorf("Calls(chat) = %d, want 0", got)
	}
	for m, want := range map[string]int{"tiny": 2, "big": 1, "missing": 1, "small": 0} {
		if got := s.CallsFor("generate", m); got != want {
			t.Errorf("CallsFor(generate, %s) = %d, want %d", m, got, want)
		}
	}

	reqs := s.Requests("generate")
	if len(reqs) != 5 {
		t.Fatalf("Requests(generate) has %d bodies, want 5", len(reqs))
	}
	for i, want := range []string{"p1", "p2", "p3", "p4"} {
		var r api.GenerateRequest
		if err := json.Unmarshal(reqs[i], &r); err != nil || r.Prompt != want {
			t.Errorf("request %d = %s (%v)", i, reqs[i], err)
		}
	}
	if string(reqs[4]) != `{bad` {
		t.Errorf("malformed body recorded as %q", reqs[4])
	}
	if s.Canceled() != 0 || s.MaxInFlight() != 1 {
		t.Errorf("Canceled=%d MaxInFlight=%d", s.Canceled(), s.MaxInFlight())
	}
}

func TestMetadataEndpoints(t *testing.T) {
	s := ollamatest.New(t)
	ctx := context.Background()
	c := s.Client()

	if err := c.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Ollama is running" {
		t.Errorf("GET / = %q", body)
	}
	if v, err := c.Version(ctx); err != nil || v != "0.6.5" {
		t.Errorf("version = %q, %v", v, err)
	}

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Models {
		names = append(names, m.Name)
		if m.Digest != ollamatest.Digest(m.Name) || len(m.Digest) != 64 || m.Size <= 0 || m.Details.Family == "" {
			t.Errorf("tags entry = %+v", m)
		}
	}
	if fmt.Sprint(names) != "[tiny:latest small:latest big:latest]" {
		t.Errorf("tags = %v", names)
	}
	if ollamatest.Digest("tiny") != ollamatest.Digest("tiny:latest") || ollamatest.Digest("tiny") == ollamatest.Digest("big") {
		t.Error("Digest is not normalised/distinct")
	}

	show, err := c.Show(ctx, &api.ShowRequest{Model: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if show.Details.Format != "gguf" || show.ModelInfo["general.architecture"] != "fake" || len(show.Capabilities) == 0 {
		t.Errorf("show = %+v", show)
	}

	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 0 {
		t.Fatalf("ps before any call = %+v, %v", ps, err)
	}
	if _, err := c.Embed(ctx, &api.EmbedRequest{Model: "small", Input: "x"}); err != nil {
		t.Fatal(err)
	}
	ps, err = c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 1 || ps.Models[0].Name != "small:latest" || ps.Models[0].Digest != ollamatest.Digest("small") {
		t.Fatalf("ps = %+v, %v", ps, err)
	}
	// keep_alive 0 unloads, like Ollama.
	err = c.Generate(ctx, &api.GenerateRequest{Model: "small", KeepAlive: &api.Duration{}}, func(r api.GenerateResponse) error {
		if r.DoneReason != "unload" {
			t.Errorf("done_reason = %q, want unload", r.DoneReason)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ps, _ = c.ListRunning(ctx); len(ps.Models) != 0 {
		t.Errorf("ps after unload = %+v", ps.Models)
	}
	if s.Calls("heartbeat") != 2 || s.Calls("version") != 1 || s.Calls("show") != 1 || s.Calls("ps") != 3 {
		t.Errorf("calls: heartbeat=%d version=%d show=%d ps=%d",
			s.Calls("heartbeat"), s.Calls("version"), s.Calls("show"), s.Calls("ps"))
	}
}

func TestCloseAbortsParkedCalls(t *testing.T) {
	s := ollamatest.New(t)
	s.Block() // never released: Close must not hang
	errc := make(chan error, 1)
	go func() {
		_, err := s.Client().Embed(context.Background(), &api.EmbedRequest{Model: "tiny", Input: "x"})
		errc <- err
	}()
	eventually(t, "the call to be parked", func() bool { return s.InFlight() == 1 })
	s.Close()
	if err := <-errc; err == nil {
		t.Error("parked call succeeded after Close")
	}
	if err := s.Client().Heartbeat(context.Background()); err == nil {
		t.Error("heartbeat succeeded after Close")
	}
}
