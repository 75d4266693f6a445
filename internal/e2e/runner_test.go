package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// sentOptions returns the options and keep_alive of the generate call
// Ollama got whose prompt is prompt.
func (s *stack) sentOptions(prompt string) (map[string]any, json.RawMessage) {
	s.t.Helper()
	for _, raw := range s.fake.Requests("generate") {
		var r struct {
			Prompt    string          `json:"prompt"`
			Options   map[string]any  `json:"options"`
			KeepAlive json.RawMessage `json:"keep_alive"`
		}
		if json.Unmarshal(raw, &r) == nil && r.Prompt == prompt {
			return r.Options, r.KeepAlive
		}
	}
	s.t.Fatalf("Ollama got no call for %q", prompt)
	return nil, nil
}

// TestRunnerOptionsReplaced: with dispatcher.runner_options at its default
// (replace), an agent's runner options and keep_alive never reach Ollama:
// every call runs with herd's num_thread (the CPU budget), the model's
// num_ctx (for a model the configuration does not list, its own, read
// from Ollama's /api/show: the fake's 4096-token model gets Ollama's
// default, 2048) and herd's keep_alive; the request is answered 200.
func TestRunnerOptionsReplaced(t *testing.T) {
	s := newStack(t, stackOpts{wcfg: func(c *worker.Config) {
		c.CPUBudget = 3
		c.NumCtx = map[string]int{"tiny": 1024} // "small" has no window of its own
	}})
	c := s.client()
	for i, tt := range []struct {
		model, opts, keepAlive string
	}{
		{"tiny", `"num_thread":1`, ""},
		{"tiny", `"num_gpu":0`, ""},
		{"tiny", `"num_batch":64`, ""},
		{"tiny", `"use_mlock":true`, ""},
		{"tiny", `"use_mmap":false`, ""},
		{"tiny", `"main_gpu":1,"low_vram":true`, ""},
		{"tiny", `"num_ctx":8192`, ""},
		{"small", `"num_ctx":1048576`, ""},
		{"tiny", `"temperature":0.5`, `0`},
		{"small", `"temperature":0.5`, `"-1s"`},
	} {
		prompt := fmt.Sprintf("runner options %d", i)
		body := fmt.Sprintf(`{"model":%q,"prompt":%q,"options":{%s}`, tt.model, prompt, tt.opts)
		if tt.keepAlive != "" {
			body += `,"keep_alive":` + tt.keepAlive
		}
		body += "}"
		if _, _, err := c.Raw(t.Context(), []byte(body), client.Cache(wire.CacheOff)); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		opts, ka := s.sentOptions(prompt)
		want := map[string]any{"num_thread": 3.0, "num_ctx": 2048.0}
		if tt.model == "tiny" {
			want["num_ctx"] = 1024.0
		}
		if strings.HasPrefix(tt.opts, `"temperature"`) {
			want["temperature"] = 0.5
		}
		want["num_predict"] = 2048.0 // the default cap: TestMaxPredict
		if fmt.Sprint(opts) != fmt.Sprint(want) || len(ka) != 0 {
			t.Errorf("%s: Ollama got options %v, keep_alive %s; want %v and herd's keep_alive (none set)", body, opts, ka, want)
		}
	}
}

// TestRunnerOptionsRefused: with dispatcher.runner_options refuse, a
// request that sets a runner option or keep_alive is answered 400
// invalid_request naming it, and never reaches Ollama.
func TestRunnerOptionsRefused(t *testing.T) {
	s := newStack(t, stackOpts{dcfg: func(c *dispatcherConfig) { c.RunnerOptions = "refuse" }})
	c := s.client()
	for _, tt := range []struct{ body, names string }{
		{`{"model":"tiny","prompt":"r1","options":{"num_thread":2}}`, "options.num_thread"},
		{`{"model":"tiny","prompt":"r2","options":{"num_ctx":1048576,"use_mmap":false}}`, "options.num_ctx, options.use_mmap"},
		{`{"model":"tiny","prompt":"r3","keep_alive":0}`, "keep_alive"},
		{`{"model":"tiny","input":"r4","options":{"num_batch":8}}`, "options.num_batch"},
	} {
		_, _, err := c.Raw(t.Context(), []byte(tt.body))
		var he *client.Error
		if !errors.As(err, &he) || he.Status != 400 || he.Code != client.Code(wire.CodeInvalidRequest) ||
			!strings.Contains(he.Message, tt.names+": herd sets") || !strings.Contains(he.Message, "runner_options") {
			t.Errorf("%s: %v, want 400 invalid_request naming %s and the setting", tt.body, err, tt.names)
		}
	}
	if n := len(s.fake.Requests("generate")) + len(s.fake.Requests("embed")); n != 0 {
		t.Errorf("Ollama got %d calls, want none", n)
	}
	if _, _, err := c.Raw(t.Context(), []byte(`{"model":"tiny","prompt":"ok","options":{"temperature":0}}`)); err != nil {
		t.Errorf("a request without runner options: %v", err)
	}
}

// TestMaxPredict: generation length is capped per model. Without
// num_predict a call runs with the cap (Ollama's own default is unlimited);
// above the cap, or unlimited (-1, -2, 0), the request is answered 400
// invalid_request naming the cap, before it is queued.
func TestMaxPredict(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.client()
	if _, _, err := c.Raw(t.Context(), []byte(`{"model":"tiny","prompt":"no cap given"}`)); err != nil {
		t.Fatal(err)
	}
	if opts, _ := s.sentOptions("no cap given"); opts["num_predict"] != 2048.0 {
		t.Errorf("Ollama got num_predict %v, want the default cap 2048", opts["num_predict"])
	}
	if _, _, err := c.Raw(t.Context(), []byte(`{"model":"tiny","prompt":"within","options":{"num_predict":100}}`)); err != nil {
		t.Fatal(err)
	}
	if opts, _ := s.sentOptions("within"); opts["num_predict"] != 100.0 {
		t.Errorf("Ollama got num_predict %v, want the request's 100", opts["num_predict"])
	}
	for _, n := range []int{-1, -2, 0, 2049} {
		body := fmt.Sprintf(`{"model":"tiny","prompt":"cap %d","options":{"num_predict":%d}}`, n, n)
		_, _, err := c.Raw(t.Context(), []byte(body))
		var he *client.Error
		if !errors.As(err, &he) || he.Status != 400 || he.Code != client.Code(wire.CodeInvalidRequest) || !strings.Contains(he.Message, "2048 tokens") {
			t.Errorf("num_predict %d: %v, want 400 invalid_request naming the cap of 2048", n, err)
		}
	}
}
