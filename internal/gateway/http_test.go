package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/config"
)

// testKey is the API key of the keyed tests (written to a keys file in a
// temporary directory; never a real key).
const testKey = "sk-test-planner"

// authHeader returns the headers a test request needs under c.
func authHeader(c config.Config) map[string]string {
	if c.API.KeysFile == "" {
		return nil
	}
	return map[string]string{"Authorization": "Bearer " + testKey}
}

func decodeJSON(resp *http.Response, v any) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// reply is what post read of a response (its body already closed).
type reply struct {
	StatusCode int
	Header     http.Header
	Trailer    http.Header
}

func post(t *testing.T, url, body string, hdr map[string]string) (reply, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header, Trailer: resp.Trailer}, b
}

// TestDoorsFake drives both doors over HTTP against herd up with a fake
// Ollama: what a client sees, status, headers and framing.
func TestDoorsFake(t *testing.T) {
	base, _ := upFake(t, nil)

	t.Run("ollama generate, not streamed", func(t *testing.T) {
		resp, b := post(t, base+"/api/generate", `{"model":"herd-tiny","prompt":"hi","stream":false}`, map[string]string{"X-Herd-Priority": "high"})
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		var g api.GenerateResponse
		if err := json.Unmarshal(b, &g); err != nil || !g.Done || g.Response == "" {
			t.Fatalf("answer %s: %v", b, err)
		}
		for _, h := range []string{"X-Request-Id", "X-Herd-Cache", "X-Herd-Queue-Ms"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("no %s header", h)
			}
		}
		if got := resp.Header.Get("X-Herd-Priority"); got != "high" {
			t.Errorf("X-Herd-Priority %q, want high", got)
		}
	})

	t.Run("ollama chat streams NDJSON by default", func(t *testing.T) {
		resp, b := post(t, base+"/api/chat", `{"model":"herd-tiny","messages":[{"role":"user","content":"tell me a story"}]}`, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("status %d, content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
		if len(lines) < 2 {
			t.Fatalf("%d lines, want a stream: %s", len(lines), b)
		}
		for i, l := range lines {
			var c api.ChatResponse
			if err := json.Unmarshal(l, &c); err != nil {
				t.Fatalf("line %d %q: %v", i, l, err)
			}
			if c.Done != (i == len(lines)-1) {
				t.Fatalf("line %d done=%v", i, c.Done)
			}
		}
		if resp.Trailer.Get("X-Herd-Cache") == "" {
			t.Errorf("no X-Herd-Cache trailer: %v", resp.Trailer)
		}
	})

	t.Run("ollama embed and the older embeddings", func(t *testing.T) {
		resp, b := post(t, base+"/api/embed", `{"model":"herd-tiny","input":["a","b"]}`, nil)
		var e api.EmbedResponse
		if resp.StatusCode != 200 || json.Unmarshal(b, &e) != nil || len(e.Embeddings) != 2 {
			t.Fatalf("embed: %d %s", resp.StatusCode, b)
		}
		resp, b = post(t, base+"/api/embeddings", `{"model":"herd-tiny","prompt":"a"}`, nil)
		var old api.EmbeddingResponse
		if resp.StatusCode != 200 || json.Unmarshal(b, &old) != nil || len(old.Embedding) != len(e.Embeddings[0]) {
			t.Fatalf("embeddings: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("openai chat completion", func(t *testing.T) {
		resp, b := post(t, base+"/v1/chat/completions", `{"model":"herd-tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`, nil)
		var cc struct {
			Object  string
			Choices []struct {
				Message struct{ Role, Content string }
			}
			Usage struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &cc) != nil || cc.Object != "chat.completion" || len(cc.Choices) != 1 || cc.Usage.TotalTokens == 0 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})

	t.Run("openai streaming with usage", func(t *testing.T) {
		resp, b := post(t, base+"/v1/chat/completions", `{"model":"herd-tiny","messages":[{"role":"user","content":"tell me a story"}],"stream":true,"stream_options":{"include_usage":true}}`, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		events := sse(t, b)
		if events[len(events)-1] != "[DONE]" {
			t.Fatalf("last event %q, want [DONE]", events[len(events)-1])
		}
		var usage struct {
			Choices []any
			Usage   *struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(events[len(events)-2]), &usage); err != nil || usage.Usage == nil || len(usage.Choices) != 0 {
			t.Fatalf("usage event %q: %v", events[len(events)-2], err)
		}
	})

	t.Run("unknown model: 404 in each door's shape", func(t *testing.T) {
		resp, b := post(t, base+"/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, nil)
		var oe struct {
			Error struct{ Message, Type, Code string }
		}
		if resp.StatusCode != 404 || json.Unmarshal(b, &oe) != nil || oe.Error.Code != "model_not_found" || oe.Error.Message == "" {
			t.Fatalf("openai: %d %s", resp.StatusCode, b)
		}
		resp, b = post(t, base+"/api/generate", `{"model":"nope","prompt":"hi"}`, nil)
		var e struct{ Error string }
		if resp.StatusCode != 404 || json.Unmarshal(b, &e) != nil || e.Error == "" {
			t.Fatalf("ollama: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("lists", func(t *testing.T) {
		for _, u := range []string{"/api/tags", "/api/ps", "/v1/models", "/v1/models/herd-tiny", "/api/version", "/"} {
			resp, err := http.Get(base + u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || (u != "/" && u != "/api/version" && !bytes.Contains(b, []byte("herd-tiny"))) {
				t.Errorf("%s: %d %s", u, resp.StatusCode, b)
			}
		}
	})
}

// sse returns the data of each server-sent event in b.
func sse(t *testing.T, b []byte) []string {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\n\n")) {
		t.Fatalf("stream does not end with an event: %q", b)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		if l == "" {
			continue
		}
		d, ok := strings.CutPrefix(l, "data: ")
		if !ok {
			t.Fatalf("line %q is not data: ...", l)
		}
		out = append(out, d)
	}
	return out
}

// TestKeys: with keys configured, no key or a wrong one is 401 in each
// door's shape; a key acts as its agent, with its priority ceiling.
func TestKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte("# test keys\n"+testKey+" planner normal\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _ := upFake(t, func(c *config.Config) { c.API.KeysFile = file })
	body := `{"model":"herd-tiny","prompt":"hi","stream":false}`
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"no key", nil, 401},
		{"wrong key", map[string]string{"Authorization": "Bearer sk-wrong"}, 401},
		{"another agent", map[string]string{"Authorization": "Bearer " + testKey, "X-Herd-Agent": "intruder"}, 403},
		{"key", map[string]string{"Authorization": "Bearer " + testKey, "X-Herd-Priority": "high"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, base+"/api/generate", body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status == 200 {
				if a, p := resp.Header.Get("X-Herd-Agent"), resp.Header.Get("X-Herd-Priority"); a != "planner" || p != "normal" {
					t.Errorf("agent %q priority %q, want planner at its ceiling normal", a, p)
				}
			}
			if tc.status == 401 {
				resp, b := post(t, base+"/v1/chat/completions", `{"model":"herd-tiny","messages":[{"role":"user","content":"hi"}]}`, tc.hdr)
				var oe struct{ Error struct{ Type string } }
				if resp.StatusCode != 401 || json.Unmarshal(b, &oe) != nil || oe.Error.Type != "authentication_error" {
					t.Errorf("openai: %d %s", resp.StatusCode, b)
				}
			}
		})
	}
}
