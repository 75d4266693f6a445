package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/wire"
)

// sent is one request herd ask published, as herd received it.
type sent struct {
	header nats.Header
	body   map[string]any
}

// fakeHerd answers every request published on herd.req.> at once with
// "ok", as herd would (Herd-Status 200, Ollama's JSON, model "auto" named
// in Herd-Model), and records what it received. It returns the NATS URL.
func fakeHerd(t *testing.T) (string, <-chan sent) {
	t.Helper()
	s := provisionedServer(t)
	nc, _ := s.Connect(t)
	got := make(chan sent, 16)
	_, err := nc.Subscribe(wire.ReqPrefix+".>", func(m *nats.Msg) {
		var body map[string]any
		_ = json.Unmarshal(m.Data, &body)
		got <- sent{header: m.Header, body: body}
		r := nats.NewMsg(m.Header.Get(wire.HdrReplyTo))
		r.Header.Set(wire.HdrStatus, "200")
		r.Header.Set(wire.HdrRequestID, m.Header.Get(wire.HdrMsgID))
		r.Header.Set(wire.HdrCache, wire.CacheMiss)
		r.Header.Set(wire.HdrModel, "chosen")
		answer := map[string]any{"model": body["model"], "done": true, "response": "ok",
			"message": map[string]any{"role": "assistant", "content": "ok"}}
		r.Data, _ = json.Marshal(answer)
		_ = nc.PublishMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // subscribed in the server before herd asks
		t.Fatal(err)
	}
	return s.URL, got
}

// ask runs herd ask with stdin and returns its output (stdout, then
// stderr) and its exit code.
func ask(t *testing.T, url, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := newRoot()
	var out, errOut bytes.Buffer
	cmd.SetArgs(append([]string{"ask", "--nats", url, "--timeout", "10s"}, args...))
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	code := 0
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		code = exitCode(err)
		errOut.WriteString("herd: " + err.Error())
	}
	return out.String() + errOut.String(), code
}

// received returns the request fakeHerd received, or nil after a short wait.
func received(got <-chan sent, wait time.Duration) *sent {
	select {
	case s := <-got:
		return &s
	case <-time.After(wait):
		return nil
	}
}

func TestAskPrompt(t *testing.T) {
	url, got := fakeHerd(t)
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		prompt string
	}{
		{"argument", "", []string{"why", "is", "the", "sky", "blue?"}, "why is the sky blue?"},
		{"pipe", "a question\nfrom a pipe\n", nil, "a question\nfrom a pipe"},
		{"dash", "the text\n", []string{"-"}, "the text"},
		{"dash among words", "the text\n", []string{"summarize:", "-"}, "summarize: the text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := ask(t, url, tc.stdin, tc.args...)
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			r := received(got, 5*time.Second)
			if r == nil {
				t.Fatal("herd received no request")
			}
			if r.body["prompt"] != tc.prompt {
				t.Errorf("prompt %q, want %q", r.body["prompt"], tc.prompt)
			}
			if strings.TrimSpace(out) != "ok" {
				t.Errorf("output %q, want the answer", out)
			}
		})
	}
}

func TestAskOptions(t *testing.T) {
	url, got := fakeHerd(t)
	for _, tc := range []struct {
		name   string
		args   []string
		body   map[string]any // fields the request body must have
		header map[string]string
	}{
		{"system and format", []string{"--system", "be brief", "--format", "json", "hi"},
			map[string]any{"system": "be brief", "format": "json", "prompt": "hi"}, nil},
		{"format schema", []string{"--format", `{"type":"object"}`, "hi"},
			map[string]any{"format": map[string]any{"type": "object"}}, nil},
		{"chat system", []string{"--op", "chat", "--system", "be brief", "hi"},
			map[string]any{"messages": []any{
				map[string]any{"role": "system", "content": "be brief"},
				map[string]any{"role": "user", "content": "hi"}}}, nil},
		{"cache and headers", []string{"--cache", "refresh", "--header", "Herd-Cache-TTL=5m", "--header", "nats-msg-id=ask-1", "hi"},
			nil, map[string]string{wire.HdrCache: "refresh", wire.HdrCacheTTL: "5m0s", wire.HdrMsgID: "ask-1"}},
		{"cache off", []string{"--cache", "off", "hi"}, nil, map[string]string{wire.HdrCache: "off"}},
		{"deadline header", []string{"--header", "Herd-Deadline=2099-01-02T03:04:05Z", "hi"},
			nil, map[string]string{wire.HdrDeadline: "2099-01-02T03:04:05Z"}},
		{"default model", []string{"hi"}, map[string]any{"model": "herd-tiny"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := ask(t, url, "", tc.args...)
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			r := received(got, 5*time.Second)
			if r == nil {
				t.Fatal("herd received no request")
			}
			for k, want := range tc.body {
				if g, _ := json.Marshal(r.body[k]); string(g) != mustJSON(t, want) {
					t.Errorf("body %s = %s, want %s", k, g, mustJSON(t, want))
				}
			}
			for k, want := range tc.header {
				if g := r.header.Get(k); g != want {
					t.Errorf("header %s = %q, want %q", k, g, want)
				}
			}
		})
	}
}

// TestAskModelFromConfig: with no --model, herd ask asks for the
// configuration's model (the first one kept warm, else the first listed),
// not a fixed herd-tiny.
func TestAskModelFromConfig(t *testing.T) {
	url, got := fakeHerd(t)
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"warm":   {"models:\n  - {name: big, num_ctx: 2048}\n  - {name: mine, num_ctx: 2048, priority: true}\n", "mine"},
		"listed": {"models:\n  - {name: first, num_ctx: 2048}\n  - {name: second, num_ctx: 2048}\n", "first"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := ask(t, url, "", "--config", path, "-v", "hi")
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, out)
			}
			r := received(got, 5*time.Second)
			if r == nil {
				t.Fatal("herd received no request")
			}
			if r.body["model"] != tc.want {
				t.Errorf("model %q, want %q", r.body["model"], tc.want)
			}
			if !strings.Contains(out, "model chosen") {
				t.Errorf("-v does not name the model that answered (Herd-Model):\n%s", out)
			}
		})
	}
}

// TestAskUsageErrors: a wrong command line exits 64 and sends nothing.
func TestAskUsageErrors(t *testing.T) {
	url, got := fakeHerd(t)
	for _, args := range [][]string{
		{"--cache", "sometimes", "hi"},
		{"--header", "Herd-Cache", "hi"},
		{"--header", "X-Trace=1", "hi"},
		{"--header", "Herd-Cache-TTL=soon", "hi"},
		{"--format", "yaml", "hi"},
		{"--op", "embed", "--system", "s", "hi"},
		{"--op", "translate", "hi"},
		{"--options", "[1]", "hi"},
		{"--priority", "urgent", "hi"},
		{"--config", filepath.Join(t.TempDir(), "missing.yaml"), "hi"},
		{}, // no prompt and nothing on stdin
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, code := ask(t, url, "", args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d: %s", code, exitUsage, out)
			}
			if r := received(got, 50*time.Millisecond); r != nil {
				t.Errorf("herd received a request: %v", r.body)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
