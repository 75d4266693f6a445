package npm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamaproxy"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/testbin"
)

// The generated models the managed Ollama imports (internal/testmodel).
const (
	tinyModel = "herd-tiny"
	slowModel = "herd-slow"
)

// real is herd up on a managed real Ollama, with a recording proxy
// between herd's worker and Ollama.
type real struct {
	herd   string // the HTTP doors' base URL
	ollama string // the managed Ollama's own URL
	proxy  *ollamaproxy.Proxy
}

// upReal starts a managed Ollama serving both generated models and herd up
// on it (through a recording proxy) with the HTTP doors on a free port.
// Without the pinned Ollama it is skipped, or fails when
// HERD_REQUIRE_OLLAMA is set.
func upReal(t *testing.T) real {
	t.Helper()
	bin := testbin.Ollama(t)
	if testing.Short() {
		t.Skip("starts a real Ollama server")
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	mctx, stopOllama := context.WithCancel(context.Background())
	inst, err := managed.Start(mctx, managed.Config{Binary: bin, Dir: t.TempDir(), NumParallel: 2,
		TestModels: []string{tinyModel, slowModel}}, log)
	if err != nil {
		stopOllama()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopOllama()
		_ = inst.Wait()
	})
	proxy := ollamaproxy.New(t, inst.URL())

	c := config.Default()
	c.Server.Listen = "127.0.0.1:-1"
	c.Server.DataDir = t.TempDir()
	c.Server.SyncAlways = false
	c.HTTP.Listen = ""
	c.Ollama.URL = proxy.URL
	c.Worker.CPUBudget = 1
	c.API.Listen = fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- stack.Up(ctx, c, log, func(url string) { ready <- url }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("herd up: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("herd up: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("herd up: not ready after two minutes")
	}
	r := real{herd: "http://" + c.API.Listen, ollama: inst.URL(), proxy: proxy}
	natstest.CheckFor(t, time.Minute, 50*time.Millisecond, func() error {
		_, body, err := get(r.herd + "/api/tags")
		if err != nil {
			return err
		}
		if !bytes.Contains(body, []byte(tinyModel)) || !bytes.Contains(body, []byte(slowModel)) {
			return fmt.Errorf("models not served yet: %s", body)
		}
		return nil
	})
	return r
}

func get(url string) (int, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// node runs script with the pinned npm clients against base and returns
// what it printed. Without node or node_modules (npm ci) the test is
// skipped, or fails when HERD_REQUIRE_NPM is set (.ci/run sets it).
func node(t *testing.T, base, script string) string {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat("node_modules/openai/package.json")
		if err == nil {
			_, err = os.Stat("node_modules/ollama/package.json")
		}
	}
	if err != nil {
		if os.Getenv("HERD_REQUIRE_NPM") != "" {
			t.Fatalf("node and the npm clients are required (cd test/npm && npm ci): %v", err)
		}
		t.Skipf("no node or npm clients (cd test/npm && npm ci): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script)
	cmd.Env = append(os.Environ(), "HERD_URL="+base, "HERD_MODEL="+tinyModel)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", script, err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// TestHTTPDoorsReal: the real clients, curl's view of both streams next to
// Ollama's own, and one run for one Idempotency-Key.
func TestHTTPDoorsReal(t *testing.T) {
	r := upReal(t)

	t.Run("ollama npm client", func(t *testing.T) {
		t.Logf("ollama: %s", node(t, r.herd, "ollama.mjs"))
	})
	t.Run("openai npm client", func(t *testing.T) {
		t.Logf("openai: %s", node(t, r.herd, "openai.mjs"))
	})
	t.Run("curl NDJSON like Ollama's", func(t *testing.T) {
		for _, ep := range []struct{ path, body string }{
			{"/api/generate", `{"model":"herd-tiny","prompt":"tell me a story","options":{"num_predict":12}}`},
			{"/api/chat", `{"model":"herd-tiny","messages":[{"role":"user","content":"tell me a story"}],"options":{"num_predict":12}}`},
		} {
			hh, hb := curl(t, r.herd+ep.path, ep.body)
			oh, ob := curl(t, r.ollama+ep.path, ep.body)
			if h, o := contentType(hh), contentType(oh); h != o {
				t.Errorf("%s: Content-Type %q, Ollama's %q", ep.path, h, o)
			}
			h, o := ndjsonShape(t, hb), ndjsonShape(t, ob)
			if !equalShape(h, o) {
				t.Errorf("%s: shape\n herd   %v\n ollama %v\nherd's body:\n%s", ep.path, h, o, hb)
			}
			t.Logf("%s %s: %d lines, Ollama %d, shape %v", ep.path, contentType(hh), bytes.Count(hb, []byte("\n")), bytes.Count(ob, []byte("\n")), h)
		}
	})
	t.Run("curl SSE like Ollama's", func(t *testing.T) {
		body := `{"model":"herd-tiny","messages":[{"role":"user","content":"tell me a story"}],"max_tokens":12,"stream":true,"stream_options":{"include_usage":true}}`
		hh, hb := curl(t, r.herd+"/v1/chat/completions", body)
		oh, ob := curl(t, r.ollama+"/v1/chat/completions", body)
		if h, o := contentType(hh), contentType(oh); h != o {
			t.Errorf("Content-Type %q, Ollama's %q", h, o)
		}
		h, o := sseShape(t, hb), sseShape(t, ob)
		if !equalShape(h, o) {
			t.Errorf("shape\n herd   %v\n ollama %v\nherd's body:\n%s", h, o, hb)
		}
		t.Logf("%s: %d events, Ollama %d, shape %v", contentType(hh), bytes.Count(hb, []byte("\n\n")), bytes.Count(ob, []byte("\n\n")), h)
		// Not streamed: the chat.completion object.
		body = `{"model":"herd-tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":12}`
		_, hb = curl(t, r.herd+"/v1/chat/completions", body)
		_, ob = curl(t, r.ollama+"/v1/chat/completions", body)
		if h, o := keys(t, hb), keys(t, ob); !slices.Equal(h, o) {
			t.Errorf("chat.completion keys\n herd   %v\n ollama %v", h, o)
		}
	})
	t.Run("one run for one Idempotency-Key", func(t *testing.T) {
		idempotency(t, r)
	})
}

// idempotency: a call whose connection is killed while Ollama runs it,
// then the same Idempotency-Key again (twice): Ollama ran it once, and
// both retries get the same body.
func idempotency(t *testing.T, r real) {
	prompt := fmt.Sprintf("idempotent %d", time.Now().UnixNano())
	body := fmt.Sprintf(`{"model":%q,"prompt":%q,"stream":false,"options":{"temperature":0.8,"num_predict":60}}`, slowModel, prompt)
	send := func(ctx context.Context) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.herd+"/api/generate", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", "job-"+prompt[len("idempotent "):])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	ctx, kill := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { _, _, err := send(ctx); first <- err }()
	natstest.CheckFor(t, time.Minute, 10*time.Millisecond, func() error {
		if len(r.proxy.Calls("/api/generate", prompt)) == 0 {
			return fmt.Errorf("ollama has not been called yet")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // well into the generation (25-50 tokens/s)
	kill()
	if err := <-first; err == nil {
		t.Fatal("the first call was not cut")
	}
	code, second, err := send(t.Context())
	if err != nil || code != 200 {
		t.Fatalf("retry: %v %d %s", err, code, second)
	}
	_, third, err := send(t.Context())
	if err != nil || !bytes.Equal(second, third) {
		t.Fatalf("a second retry got another body (%v):\n%s\n%s", err, second, third)
	}
	calls := r.proxy.Calls("/api/generate", prompt)
	if len(calls) != 1 {
		t.Fatalf("Ollama ran the request %d times, want once", len(calls))
	}
	var g struct {
		Done      bool `json:"done"`
		EvalCount int  `json:"eval_count"`
	}
	if err := json.Unmarshal(second, &g); err != nil || !g.Done {
		t.Fatalf("retry body %s: %v", second, err)
	}
	t.Logf("killed mid-call, retried twice: Ollama ran it once (%d tokens), both retries got the same %d bytes",
		g.EvalCount, len(second))
}

// curl posts body to url with curl and returns the response headers and
// body as curl got them.
func curl(t *testing.T, url, body string) (headers, out []byte) {
	t.Helper()
	curlBin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	dir := t.TempDir()
	hf, bf := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
	cmd := exec.CommandContext(t.Context(), curlBin, "-sS", "-N", "--max-time", "120", "-X", "POST",
		"-H", "Content-Type: application/json", "--data-binary", body, "-D", hf, "-o", bf, url)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	headers, _ = os.ReadFile(hf)
	out, _ = os.ReadFile(bf)
	return headers, out
}

func contentType(headers []byte) string {
	for l := range strings.SplitSeq(string(headers), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Type") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// keys returns the sorted key paths of a JSON document (array elements
// merged), e.g. "choices[].delta.content".
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	set := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				set[prefix+k] = true
				walk(prefix+k+".", e)
			}
		case []any:
			for _, e := range x {
				walk(strings.TrimSuffix(prefix, ".")+"[].", e)
			}
		}
	}
	walk("", v)
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// shape is the keys of each kind of line or event of a stream.
type shape map[string][]string

func equalShape(a, b shape) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// ndjsonShape checks Ollama's framing (one JSON object a line, each line
// ending in \n, the last done) and returns the keys of the chunks and of
// the final line.
func ndjsonShape(t *testing.T, b []byte) shape {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("NDJSON does not end with a newline: %q", b)
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(lines) < 2 {
		t.Fatalf("not a stream: %q", b)
	}
	s := shape{"final": keys(t, lines[len(lines)-1])}
	for _, l := range lines[:len(lines)-1] {
		k := keys(t, l)
		if prev, ok := s["chunk"]; ok && !slices.Equal(prev, k) {
			t.Fatalf("chunks of two shapes: %v and %v", prev, k)
		}
		s["chunk"] = k
	}
	return s
}

// sseShape checks OpenAI's framing ("data: <json>\n\n" events ending with
// "data: [DONE]\n\n") and returns the keys of the content chunks, the
// finishing chunk and the usage chunk.
func sseShape(t *testing.T, b []byte) shape {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("data: [DONE]\n\n")) {
		t.Fatalf("stream does not end with data: [DONE]: %q", b)
	}
	events := strings.Split(strings.TrimSuffix(string(b), "\n\n"), "\n\n")
	s := shape{}
	for _, e := range events[:len(events)-1] {
		data, ok := strings.CutPrefix(e, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("event %q is not one data: line", e)
		}
		var ev struct {
			Choices []struct {
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		kind := "content"
		switch {
		case len(ev.Choices) == 0:
			kind = "usage"
		case ev.Choices[0].FinishReason != nil:
			kind = "finish"
		}
		s[kind] = keys(t, []byte(data))
	}
	return s
}
