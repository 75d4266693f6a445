package gateway

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ollama/ollama/api"
)

// The OpenAI wire types, as Ollama v0.6.5's OpenAI layer
// (github.com/ollama/ollama/openai) spells them; see doc.go for why they
// are not imported.

// Message is a chat message; Content is a string, a list of parts
// (text, image_url) or null with ToolCalls.
type Message struct {
	Role       string     `json:"role"`
	Content    any        `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call of the model's.
type ToolCall struct {
	ID       string `json:"id"`
	Index    int    `json:"index"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// StreamOptions asks for a usage chunk at the end of a stream.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ResponseFormat is text, json_object or json_schema.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is the schema of a json_schema response format.
type JSONSchema struct {
	Schema json.RawMessage `json:"schema"`
}

// ChatCompletionRequest is POST /v1/chat/completions.
type ChatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Seed                *int            `json:"seed"`
	Stop                any             `json:"stop"`
	Temperature         *float64        `json:"temperature"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	TopP                *float64        `json:"top_p"`
	ResponseFormat      *ResponseFormat `json:"response_format"`
	Tools               []api.Tool      `json:"tools"`
}

// CompletionRequest is POST /v1/completions.
type CompletionRequest struct {
	Model               string         `json:"model"`
	Prompt              string         `json:"prompt"`
	FrequencyPenalty    *float64       `json:"frequency_penalty"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
	PresencePenalty     *float64       `json:"presence_penalty"`
	Seed                *int           `json:"seed"`
	Stop                any            `json:"stop"`
	Stream              bool           `json:"stream"`
	StreamOptions       *StreamOptions `json:"stream_options"`
	Temperature         *float64       `json:"temperature"`
	TopP                *float64       `json:"top_p"`
	Suffix              string         `json:"suffix"`
}

// EmbedRequest is POST /v1/embeddings; Input is a string or a list of
// strings, EncodingFormat "float" (default) or "base64".
type EmbedRequest struct {
	Input          any    `json:"input"`
	Model          string `json:"model"`
	EncodingFormat string `json:"encoding_format"`
}

// Usage is the token count of an answer.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Choice is a whole answer of a chat completion.
type Choice struct {
	Index        int     `json:"index"`
	Message      Message `json:"message"`
	FinishReason *string `json:"finish_reason"`
}

// ChunkChoice is a streamed piece of a chat completion.
type ChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Message `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// CompleteChunkChoice is an answer, or a streamed piece, of a completion.
type CompleteChunkChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	FinishReason *string `json:"finish_reason"`
}

// ChatCompletion is the answer of a chat completion.
type ChatCompletion struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	SystemFingerprint string   `json:"system_fingerprint"`
	Choices           []Choice `json:"choices"`
	Usage             Usage    `json:"usage"`
}

// ChatCompletionChunk is one server-sent event of a streamed chat completion.
type ChatCompletionChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"`
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint"`
	Choices           []ChunkChoice `json:"choices"`
	Usage             *Usage        `json:"usage,omitempty"`
}

// Completion is the answer, or a streamed piece (Object the same), of a
// completion.
type Completion struct {
	ID                string                `json:"id"`
	Object            string                `json:"object"`
	Created           int64                 `json:"created"`
	Model             string                `json:"model"`
	SystemFingerprint string                `json:"system_fingerprint"`
	Choices           []CompleteChunkChoice `json:"choices"`
	Usage             *Usage                `json:"usage,omitempty"`
}

// Model is an entry of GET /v1/models and the answer of /v1/models/{id}.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// ModelList is GET /v1/models.
type ModelList struct {
	Object string  `json:"object"`
	Data   []Model `json:"data"`
}

// Embedding is one vector of an embeddings answer: a list of floats, or
// a base64 string of little-endian float32s.
type Embedding struct {
	Object    string `json:"object"`
	Embedding any    `json:"embedding"`
	Index     int    `json:"index"`
}

// EmbeddingUsage is the token count of an embeddings answer.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// EmbeddingList is the answer of /v1/embeddings.
type EmbeddingList struct {
	Object string         `json:"object"`
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// fingerprint is the system_fingerprint of every answer, as Ollama's.
const fingerprint = "fp_ollama"

// errInvalid is the cause of every request the conversions refuse.
var errInvalid = errors.New("invalid request")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, a...))
}

// ChatRequest converts a chat completion request to Ollama's. Options:
// max_completion_tokens (else max_tokens) → num_predict, temperature and
// top_p (1.0 when absent, OpenAI's defaults), seed, stop,
// frequency_penalty, presence_penalty; response_format json_object →
// format "json", json_schema → the schema; tools as they are.
func ChatRequest(r ChatCompletionRequest) (*api.ChatRequest, error) {
	if r.Model == "" {
		return nil, invalid("model is required")
	}
	var messages []api.Message
	for _, msg := range r.Messages {
		switch content := msg.Content.(type) {
		case string:
			messages = append(messages, api.Message{Role: msg.Role, Content: content})
		case []any:
			for _, c := range content {
				m, err := contentPart(msg.Role, c)
				if err != nil {
					return nil, err
				}
				messages = append(messages, m)
			}
		default:
			if msg.ToolCalls == nil {
				return nil, invalid("invalid message content type: %T", content)
			}
			calls := make([]api.ToolCall, len(msg.ToolCalls))
			for i, tc := range msg.ToolCalls {
				calls[i].Function.Name = tc.Function.Name
				if err := json.Unmarshal([]byte(tc.Function.Arguments), &calls[i].Function.Arguments); err != nil {
					return nil, invalid("invalid tool call arguments")
				}
			}
			messages = append(messages, api.Message{Role: msg.Role, ToolCalls: calls})
		}
	}
	opts, err := options(r.Stop, firstInt(r.MaxCompletionTokens, r.MaxTokens), r.Temperature, r.TopP, r.Seed, r.FrequencyPenalty, r.PresencePenalty)
	if err != nil {
		return nil, err
	}
	var format json.RawMessage
	if r.ResponseFormat != nil {
		switch strings.ToLower(strings.TrimSpace(r.ResponseFormat.Type)) {
		case "json_object":
			format = json.RawMessage(`"json"`)
		case "json_schema":
			if r.ResponseFormat.JSONSchema != nil {
				format = r.ResponseFormat.JSONSchema.Schema
			}
		case "text", "":
		default:
			return nil, invalid("response_format type %q must be text, json_object or json_schema", r.ResponseFormat.Type)
		}
	}
	stream := r.Stream
	return &api.ChatRequest{Model: r.Model, Messages: messages, Format: format, Options: opts, Stream: &stream, Tools: r.Tools}, nil
}

func contentPart(role string, c any) (api.Message, error) {
	data, ok := c.(map[string]any)
	if !ok {
		return api.Message{}, invalid("invalid message format")
	}
	switch data["type"] {
	case "text":
		text, ok := data["text"].(string)
		if !ok {
			return api.Message{}, invalid("invalid message format")
		}
		return api.Message{Role: role, Content: text}, nil
	case "image_url":
		var url string
		if m, ok := data["image_url"].(map[string]any); ok {
			url, _ = m["url"].(string)
		} else {
			url, _ = data["image_url"].(string)
		}
		for _, t := range []string{"jpeg", "jpg", "png"} {
			if rest, ok := strings.CutPrefix(url, "data:image/"+t+";base64,"); ok {
				img, err := base64.StdEncoding.DecodeString(rest)
				if err != nil {
					return api.Message{}, invalid("invalid image input")
				}
				return api.Message{Role: role, Images: []api.ImageData{img}}, nil
			}
		}
		return api.Message{}, invalid("invalid image input: only data:image/{jpeg,png};base64 URLs")
	}
	return api.Message{}, invalid("invalid message format")
}

func firstInt(a, b *int) *int {
	if a != nil {
		return a
	}
	return b
}

// options maps OpenAI's sampling parameters to Ollama's options.
func options(stop any, maxTokens *int, temperature, topP *float64, seed *int, freq, pres *float64) (map[string]any, error) {
	o := map[string]any{"temperature": 1.0, "top_p": 1.0}
	switch s := stop.(type) {
	case nil:
	case string:
		o["stop"] = []string{s}
	case []any:
		var stops []string
		for _, v := range s {
			str, ok := v.(string)
			if !ok {
				return nil, invalid("invalid type for 'stop' field: %T", v)
			}
			stops = append(stops, str)
		}
		o["stop"] = stops
	default:
		return nil, invalid("invalid type for 'stop' field: %T", stop)
	}
	if maxTokens != nil {
		o["num_predict"] = *maxTokens
	}
	if temperature != nil {
		o["temperature"] = *temperature
	}
	if topP != nil {
		o["top_p"] = *topP
	}
	if seed != nil {
		o["seed"] = *seed
	}
	if freq != nil {
		o["frequency_penalty"] = *freq
	}
	if pres != nil {
		o["presence_penalty"] = *pres
	}
	return o, nil
}

// GenerateRequest converts a completion request to Ollama's.
func GenerateRequest(r CompletionRequest) (*api.GenerateRequest, error) {
	if r.Model == "" {
		return nil, invalid("model is required")
	}
	opts, err := options(r.Stop, firstInt(r.MaxCompletionTokens, r.MaxTokens), r.Temperature, r.TopP, r.Seed, r.FrequencyPenalty, r.PresencePenalty)
	if err != nil {
		return nil, err
	}
	stream := r.Stream
	return &api.GenerateRequest{Model: r.Model, Prompt: r.Prompt, Suffix: r.Suffix, Options: opts, Stream: &stream}, nil
}

// EmbedInput converts an embeddings request to Ollama's: a string or a
// list of strings (token arrays are not supported, as in Ollama).
func EmbedInput(r EmbedRequest) (*api.EmbedRequest, error) {
	if r.Model == "" {
		return nil, invalid("model is required")
	}
	switch f := r.EncodingFormat; f {
	case "", "float", "base64":
	default:
		return nil, invalid("encoding_format %q must be float or base64", f)
	}
	switch in := r.Input.(type) {
	case string:
		if in == "" {
			return nil, invalid("invalid input")
		}
		return &api.EmbedRequest{Model: r.Model, Input: in}, nil
	case []any:
		if len(in) == 0 {
			return nil, invalid("invalid input")
		}
		strs := make([]string, len(in))
		for i, v := range in {
			s, ok := v.(string)
			if !ok {
				return nil, invalid("input must be a string or a list of strings")
			}
			strs[i] = s
		}
		return &api.EmbedRequest{Model: r.Model, Input: strs}, nil
	}
	return nil, invalid("input must be a string or a list of strings")
}

func finish(reason string) *string {
	if reason == "" {
		return nil
	}
	return &reason
}

// toolCalls converts Ollama's tool calls; their ids are derived from id,
// so a retried request's answer is the same.
func toolCalls(id string, tc []api.ToolCall) []ToolCall {
	out := make([]ToolCall, 0, len(tc))
	for i, c := range tc {
		var t ToolCall
		t.ID = fmt.Sprintf("call_%s_%d", id, i)
		t.Index = i
		t.Type = "function"
		t.Function.Name = c.Function.Name
		args, _ := json.Marshal(c.Function.Arguments)
		t.Function.Arguments = string(args)
		out = append(out, t)
	}
	return out
}

// ToChatCompletion converts Ollama's whole chat answer.
func ToChatCompletion(id string, r api.ChatResponse) ChatCompletion {
	calls := toolCalls(id, r.Message.ToolCalls)
	reason := r.DoneReason
	if len(calls) > 0 {
		reason = "tool_calls"
	}
	var tc []ToolCall
	if len(calls) > 0 {
		tc = calls
	}
	return ChatCompletion{
		ID: id, Object: "chat.completion", Created: r.CreatedAt.Unix(), Model: r.Model, SystemFingerprint: fingerprint,
		Choices: []Choice{{Message: Message{Role: r.Message.Role, Content: r.Message.Content, ToolCalls: tc}, FinishReason: finish(reason)}},
		Usage:   Usage{PromptTokens: r.PromptEvalCount, CompletionTokens: r.EvalCount, TotalTokens: r.PromptEvalCount + r.EvalCount},
	}
}

// ChatStream turns one streamed chat request's Ollama chunks into
// chat.completion.chunk events. It is not safe for concurrent use.
type ChatStream struct {
	ID           string
	IncludeUsage bool
	toolCallSent bool
}

// Events returns the server-sent events for one Ollama chunk: its
// chunk, and after the last one the usage chunk (when asked for) and
// [DONE].
func (s *ChatStream) Events(r api.ChatResponse) []byte {
	calls := toolCalls(s.ID, r.Message.ToolCalls)
	var tc []ToolCall
	if len(calls) > 0 {
		tc = calls
	}
	reason := r.DoneReason
	if reason != "" && s.toolCallSent {
		reason = "tool_calls"
	}
	c := ChatCompletionChunk{
		ID: s.ID, Object: "chat.completion.chunk", Created: r.CreatedAt.Unix(), Model: r.Model, SystemFingerprint: fingerprint,
		Choices: []ChunkChoice{{Delta: Message{Role: "assistant", Content: r.Message.Content, ToolCalls: tc}, FinishReason: finish(reason)}},
	}
	if len(tc) > 0 {
		s.toolCallSent = true
	}
	out := event(c)
	if r.Done {
		if s.IncludeUsage {
			c.Usage = &Usage{PromptTokens: r.PromptEvalCount, CompletionTokens: r.EvalCount, TotalTokens: r.PromptEvalCount + r.EvalCount}
			c.Choices = []ChunkChoice{}
			out = append(out, event(c)...)
		}
		out = append(out, Done...)
	}
	return out
}

// Done ends an OpenAI stream.
var Done = []byte("data: [DONE]\n\n")

// event frames v as one server-sent event.
func event(v any) []byte {
	b, _ := json.Marshal(v)
	out := make([]byte, 0, len(b)+8)
	out = append(out, "data: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}

// ErrorEvent is the server-sent event of a failure after the stream
// started: OpenAI's error object, which the clients raise.
func ErrorEvent(f Failure) []byte {
	out := append([]byte("data: "), f.OpenAIBody()...)
	return append(out, "\n\n"...)
}

// ToCompletion converts Ollama's whole generate answer.
func ToCompletion(id string, r api.GenerateResponse) Completion {
	return Completion{
		ID: id, Object: "text_completion", Created: r.CreatedAt.Unix(), Model: r.Model, SystemFingerprint: fingerprint,
		Choices: []CompleteChunkChoice{{Text: r.Response, FinishReason: finish(r.DoneReason)}},
		Usage:   &Usage{PromptTokens: r.PromptEvalCount, CompletionTokens: r.EvalCount, TotalTokens: r.PromptEvalCount + r.EvalCount},
	}
}

// CompletionEvents returns the server-sent events for one streamed
// generate chunk, as ChatStream.Events does for chat.
func CompletionEvents(id string, includeUsage bool, r api.GenerateResponse) []byte {
	c := Completion{
		ID: id, Object: "text_completion", Created: r.CreatedAt.Unix(), Model: r.Model, SystemFingerprint: fingerprint,
		Choices: []CompleteChunkChoice{{Text: r.Response, FinishReason: finish(r.DoneReason)}},
	}
	out := event(c)
	if r.Done {
		if includeUsage {
			c.Usage = &Usage{PromptTokens: r.PromptEvalCount, CompletionTokens: r.EvalCount, TotalTokens: r.PromptEvalCount + r.EvalCount}
			c.Choices = []CompleteChunkChoice{}
			out = append(out, event(c)...)
		}
		out = append(out, Done...)
	}
	return out
}

// ToEmbeddingList converts Ollama's embed answer; base64 encodes each
// vector as little-endian float32s, as OpenAI does.
func ToEmbeddingList(model string, b64 bool, r api.EmbedResponse) EmbeddingList {
	data := make([]Embedding, len(r.Embeddings))
	for i, e := range r.Embeddings {
		var v any = e
		if b64 {
			buf := make([]byte, 4*len(e))
			for j, f := range e {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			v = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = Embedding{Object: "embedding", Embedding: v, Index: i}
	}
	return EmbeddingList{Object: "list", Data: data, Model: model,
		Usage: EmbeddingUsage{PromptTokens: r.PromptEvalCount, TotalTokens: r.PromptEvalCount}}
}

// OwnedBy is a model's owner as Ollama names it: the namespace of
// "namespace/model", else "library".
func OwnedBy(name string) string {
	name, _, _ = strings.Cut(name, ":")
	parts := strings.Split(name, "/")
	if len(parts) >= 2 {
		return parts[len(parts)-2]
	}
	return "library"
}

// ToModelList lists models (name → digest), sorted by name.
func ToModelList(models map[string]string) ModelList {
	names := make([]string, 0, len(models))
	for m := range models {
		names = append(names, m)
	}
	sort.Strings(names)
	l := ModelList{Object: "list", Data: []Model{}}
	for _, m := range names {
		l.Data = append(l.Data, Model{ID: m, Object: "model", OwnedBy: OwnedBy(m)})
	}
	return l
}
