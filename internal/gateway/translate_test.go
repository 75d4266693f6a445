package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/wire"
)

func ptr[T any](v T) *T { return &v }

func TestChatRequest(t *testing.T) {
	user := []Message{{Role: "user", Content: "hi"}}
	for _, tc := range []struct {
		name    string
		in      ChatCompletionRequest
		options map[string]any
		format  string
		err     string
	}{
		{name: "defaults are OpenAI's", in: ChatCompletionRequest{Model: "m", Messages: user},
			options: map[string]any{"temperature": 1.0, "top_p": 1.0}},
		{name: "max_completion_tokens wins over max_tokens", in: ChatCompletionRequest{Model: "m", Messages: user, MaxTokens: ptr(5), MaxCompletionTokens: ptr(7)},
			options: map[string]any{"temperature": 1.0, "top_p": 1.0, "num_predict": 7}},
		{name: "sampling", in: ChatCompletionRequest{Model: "m", Messages: user, Temperature: ptr(0.0), TopP: ptr(0.5), Seed: ptr(3),
			FrequencyPenalty: ptr(0.1), PresencePenalty: ptr(0.2), Stop: []any{"a", "b"}},
			options: map[string]any{"temperature": 0.0, "top_p": 0.5, "seed": 3, "frequency_penalty": 0.1, "presence_penalty": 0.2, "stop": []string{"a", "b"}}},
		{name: "stop string", in: ChatCompletionRequest{Model: "m", Messages: user, Stop: "x"},
			options: map[string]any{"temperature": 1.0, "top_p": 1.0, "stop": []string{"x"}}},
		{name: "json_object", in: ChatCompletionRequest{Model: "m", Messages: user, ResponseFormat: &ResponseFormat{Type: "json_object"}},
			options: map[string]any{"temperature": 1.0, "top_p": 1.0}, format: `"json"`},
		{name: "json_schema", in: ChatCompletionRequest{Model: "m", Messages: user, ResponseFormat: &ResponseFormat{Type: "json_schema", JSONSchema: &JSONSchema{Schema: json.RawMessage(`{"type":"object"}`)}}},
			options: map[string]any{"temperature": 1.0, "top_p": 1.0}, format: `{"type":"object"}`},
		{name: "no model", in: ChatCompletionRequest{Messages: user}, err: "model is required"},
		{name: "bad stop", in: ChatCompletionRequest{Model: "m", Messages: user, Stop: []any{1.0}}, err: "stop"},
		{name: "bad format", in: ChatCompletionRequest{Model: "m", Messages: user, ResponseFormat: &ResponseFormat{Type: "yaml"}}, err: "response_format"},
		{name: "bad content", in: ChatCompletionRequest{Model: "m", Messages: []Message{{Role: "user", Content: 3.0}}}, err: "content type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChatRequest(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errInvalid) {
					t.Fatalf("err %v, want one about %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Options, tc.options) {
				t.Errorf("options %v, want %v", got.Options, tc.options)
			}
			if string(got.Format) != tc.format {
				t.Errorf("format %s, want %s", got.Format, tc.format)
			}
		})
	}
}

func TestChatRequestMessages(t *testing.T) {
	in := ChatCompletionRequest{Model: "m", Messages: []Message{
		{Role: "system", Content: "be brief"},
		{Role: "user", Content: []any{map[string]any{"type": "text", "text": "look"},
			map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,aGk="}}}},
		{Role: "assistant", ToolCalls: []ToolCall{func() ToolCall {
			var c ToolCall
			c.Function.Name, c.Function.Arguments = "f", `{"x":1}`
			return c
		}()}},
	}}
	got, err := ChatRequest(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Messages) != 4 || got.Messages[1].Content != "look" || string(got.Messages[2].Images[0]) != "hi" ||
		got.Messages[3].ToolCalls[0].Function.Name != "f" || got.Messages[3].ToolCalls[0].Function.Arguments["x"] != 1.0 {
		t.Fatalf("messages %+v", got.Messages)
	}
}

func TestChatStreamEvents(t *testing.T) {
	at := time.Unix(1700000000, 0)
	s := &ChatStream{ID: "chatcmpl-x", IncludeUsage: true}
	first := string(s.Events(api.ChatResponse{Model: "m", CreatedAt: at, Message: api.Message{Role: "assistant", Content: "he"}}))
	want := `data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"he"},"finish_reason":null}]}` + "\n\n"
	if first != want {
		t.Fatalf("first event\n got %s\nwant %s", first, want)
	}
	last := string(s.Events(api.ChatResponse{Model: "m", CreatedAt: at, Done: true, DoneReason: "stop",
		Metrics: api.Metrics{PromptEvalCount: 3, EvalCount: 2}}))
	parts := strings.Split(strings.TrimSuffix(last, "\n\n"), "\n\n")
	if len(parts) != 3 || parts[2] != "data: [DONE]" || !strings.Contains(parts[0], `"finish_reason":"stop"`) ||
		!strings.Contains(parts[1], `"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}`) {
		t.Fatalf("last events %q", parts)
	}
}

func TestToEmbeddingListBase64(t *testing.T) {
	l := ToEmbeddingList("m", true, api.EmbedResponse{Embeddings: [][]float32{{1, -2}}, PromptEvalCount: 4})
	if got := l.Data[0].Embedding; got != "AACAPwAAAMA=" || l.Usage.TotalTokens != 4 {
		t.Fatalf("base64 %v, usage %+v", got, l.Usage)
	}
}

func TestResolveCaller(t *testing.T) {
	var keys Keys
	if err := keys.add("k1", Key{Agent: "planner", Ceiling: wire.Normal}); err != nil {
		t.Fatal(err)
	}
	d := Defaults{Agent: "http", Priority: wire.Normal}
	newID := func() string { return "N" }
	long := strings.Repeat("x", 200)
	for _, tc := range []struct {
		name string
		keys Keys
		hdr  map[string]string
		want Caller
		err  error
	}{
		{name: "defaults", hdr: nil, want: Caller{Agent: "http", Priority: wire.Normal, ID: "http=gw-N"}},
		{name: "headers", hdr: map[string]string{"X-Herd-Agent": "me", "X-Herd-Priority": "HIGH", "X-Herd-Cache": "off", "X-Herd-Timeout": "5s"},
			want: Caller{Agent: "me", Priority: wire.High, ID: "me=gw-N", Cache: "off", Timeout: "5s"}},
		{name: "idempotency key", hdr: map[string]string{"Idempotency-Key": "job-1"}, want: Caller{Agent: "http", Priority: wire.Normal, ID: "http=job-1", Keyed: true}},
		{name: "key hashed", hdr: map[string]string{"Idempotency-Key": "a b/c"},
			want: Caller{Agent: "http", Priority: wire.Normal, ID: "http=k-U5E41Rg5HsT8VXzjXDfq0o-J-_gBMyzi1BRGrpW-srU", Keyed: true}},
		{name: "bad priority", hdr: map[string]string{"X-Herd-Priority": "urgent"}, err: wire.Errorf(wire.CodeInvalidRequest, "")},
		{name: "bad agent", hdr: map[string]string{"X-Herd-Agent": "a.b"}, err: wire.Errorf(wire.CodeInvalidRequest, "")},
		{name: "agent too long for a key", hdr: map[string]string{"X-Herd-Agent": long[:128], "Idempotency-Key": "x"}, err: wire.Errorf(wire.CodeInvalidRequest, "")},
		{name: "api key: agent and ceiling", keys: keys, hdr: map[string]string{"Authorization": "Bearer k1", "X-Herd-Priority": "high"},
			want: Caller{Agent: "planner", Priority: wire.Normal, ID: "planner=gw-N"}},
		{name: "api key: lower priority kept", keys: keys, hdr: map[string]string{"Authorization": "bearer k1", "X-Herd-Priority": "low"},
			want: Caller{Agent: "planner", Priority: wire.Low, ID: "planner=gw-N"}},
		{name: "api key: same agent named", keys: keys, hdr: map[string]string{"Authorization": "Bearer k1", "X-Herd-Agent": "planner"},
			want: Caller{Agent: "planner", Priority: wire.Normal, ID: "planner=gw-N"}},
		{name: "no key", keys: keys, hdr: nil, err: ErrUnauthorized},
		{name: "wrong key", keys: keys, hdr: map[string]string{"Authorization": "Bearer k2"}, err: ErrUnauthorized},
		{name: "basic auth", keys: keys, hdr: map[string]string{"Authorization": "Basic azE="}, err: ErrUnauthorized},
		{name: "another agent", keys: keys, hdr: map[string]string{"Authorization": "Bearer k1", "X-Herd-Agent": "ops"}, err: ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.hdr {
				h.Set(k, v)
			}
			got, err := ResolveCaller(h, tc.keys, d, newID)
			if tc.err != nil {
				var we *wire.Error
				if errors.As(tc.err, &we) {
					var gw *wire.Error
					if !errors.As(err, &gw) || gw.Code != we.Code {
						t.Fatalf("err %v, want %s", err, we.Code)
					}
					return
				}
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if !wire.ValidToken(got.ID) {
				t.Fatalf("id %q is not a valid request id", got.ID)
			}
		})
	}
}

func TestFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		want       Failure
		retryAfter string
		openaiType string
	}{
		{"queue full", 429, `{"error":"full","code":"queue_full","retryable":true}`, Failure{429, wire.CodeQueueFull, "full"}, "1", "rate_limit_error"},
		{"breaker", 503, `{"error":"open","code":"breaker_open","retryable":true}`, Failure{503, wire.CodeBreakerOpen, "open"}, "1", "api_error"},
		{"deadline", 504, `{"error":"late","code":"deadline_exceeded"}`, Failure{504, wire.CodeDeadlineExceeded, "late"}, "", "timeout_error"},
		{"bad", 400, `{"error":"no","code":"invalid_request"}`, Failure{400, wire.CodeInvalidRequest, "no"}, "", "invalid_request_error"},
		{"unknown model", 404, `{"error":"nope","code":"model_not_found"}`, Failure{404, wire.CodeModelNotFound, "nope"}, "", "invalid_request_error"},
		{"not herd's body", 500, `oops`, Failure{500, wire.CodeInternal, "Internal Server Error"}, "", "api_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := FailureOf(tc.status, []byte(tc.body))
			if f != tc.want || f.RetryAfter() != tc.retryAfter {
				t.Fatalf("got %+v retry-after %q", f, f.RetryAfter())
			}
			var oe OpenAIErrorResponse
			if err := json.Unmarshal(f.OpenAIBody(), &oe); err != nil || oe.Error.Type != tc.openaiType || *oe.Error.Code != string(tc.want.Code) || oe.Error.Message != tc.want.Message {
				t.Fatalf("openai body %s", f.OpenAIBody())
			}
			var eb wire.ErrorBody
			if err := json.Unmarshal(f.OllamaBody(), &eb); err != nil || eb.Error != tc.want.Message || eb.Code != tc.want.Code {
				t.Fatalf("ollama body %s", f.OllamaBody())
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		lookup     string
		want       Key
		err        string
	}{
		{name: "key with ceiling", file: "# keys\n\nk1 planner low\n", lookup: "k1", want: Key{Agent: "planner", Ceiling: wire.Low}},
		{name: "ceiling defaults to high", file: "k2\tops\n", lookup: "k2", want: Key{Agent: "ops", Ceiling: wire.High}},
		{name: "missing agent", file: "k1\n", err: "line 1"},
		{name: "bad agent", file: "k1 a.b\n", err: "line 1"},
		{name: "bad priority", file: "\nk1 a urgent\n", err: "line 2"},
		{name: "duplicate", file: "k1 a\nk1 b\n", err: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeys(strings.NewReader(tc.file))
			if tc.err != "" {
				if !errors.Is(err, ErrBadKeys) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "k1") {
					t.Fatalf("err %v, want ErrBadKeys at %s without the key", err, tc.err)
				}
				return
			}
			got, ok := k.Lookup(tc.lookup)
			if err != nil || !ok || got != tc.want || !k.Enabled() {
				t.Fatalf("got %+v %v %v", got, ok, err)
			}
			if _, ok := k.Lookup(tc.lookup + "x"); ok {
				t.Fatal("a longer key matched")
			}
		})
	}
}

func TestLoadKeysFromEnv(t *testing.T) {
	c := DefaultConfig()
	c.Keys = []KeyConfig{{Env: "K_PLANNER", Agent: "planner", Priority: "normal"}}
	env := map[string]string{"K_PLANNER": " sk-1 \n"}
	k, err := LoadKeys(c, func(n string) string { return env[n] }, nil)
	if g, ok := k.Lookup("sk-1"); err != nil || !ok || g != (Key{Agent: "planner", Ceiling: wire.Normal}) {
		t.Fatalf("got %+v %v %v", g, ok, err)
	}
	env = nil
	if _, err := LoadKeys(c, func(n string) string { return env[n] }, nil); !errors.Is(err, ErrBadKeys) || !strings.Contains(err.Error(), "K_PLANNER") {
		t.Fatalf("unset variable: %v", err)
	}
}
