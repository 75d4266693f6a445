package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
)

// Op is the Ollama call a request makes.
type Op string

// The three operations.
const (
	OpGenerate Op = "generate"
	OpChat     Op = "chat"
	OpEmbed    Op = "embed"
)

// ErrInvalid is wrapped by every validation error Decode returns.
var ErrInvalid = errors.New("invalid request")

// Request is a decoded, validated request. Exactly one of Generate, Chat and
// Embed is set, according to Op.
type Request struct {
	Op       Op
	Model    string
	Stream   bool
	Generate *api.GenerateRequest
	Chat     *api.ChatRequest
	Embed    *api.EmbedRequest
}

// Limits bounds what Decode accepts.
type Limits struct {
	// MaxBytes is the largest body accepted.
	MaxBytes int
}

type probe struct {
	Op       string          `json:"op"`
	Messages json.RawMessage `json:"messages"`
	Input    json.RawMessage `json:"input"`
}

type generateBody struct {
	Op string `json:"op,omitempty"`
	api.GenerateRequest
}

type chatBody struct {
	Op string `json:"op,omitempty"`
	api.ChatRequest
}

type embedBody struct {
	Op string `json:"op,omitempty"`
	api.EmbedRequest
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decode parses and validates body. Unknown fields are refused so that a
// typo does not silently change the answer. Every error wraps ErrInvalid
// and says what to fix. herd's default for "stream" is false.
func Decode(body []byte, lim Limits) (*Request, error) {
	if lim.MaxBytes > 0 && len(body) > lim.MaxBytes {
		return nil, invalid("body is %d bytes, more than the limit of %d", len(body), lim.MaxBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("body is empty; send the JSON of an Ollama generate, chat or embed request")
	}
	if !utf8.Valid(body) {
		return nil, invalid("body is not valid UTF-8")
	}
	if t := bytes.TrimSpace(body); t[0] != '{' {
		return nil, invalid("body is not a JSON object")
	}
	var p probe
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, invalid("body is not a JSON object: %v", jsonErr(err))
	}
	op := Op(p.Op)
	switch {
	case op == "" && len(p.Messages) > 0:
		op = OpChat
	case op == "" && len(p.Input) > 0:
		op = OpEmbed
	case op == "":
		op = OpGenerate
	case op != OpGenerate && op != OpChat && op != OpEmbed:
		return nil, invalid("op %q is not generate, chat or embed", p.Op)
	}
	r := &Request{Op: op}
	var err error
	switch op {
	case OpGenerate:
		var g generateBody
		if err = strict(body, &g); err == nil {
			r.Generate = &g.GenerateRequest
			r.Model, r.Stream = g.Model, g.Stream != nil && *g.Stream
			err = validateGenerate(&g.GenerateRequest)
		}
	case OpChat:
		var c chatBody
		if err = strict(body, &c); err == nil {
			r.Chat = &c.ChatRequest
			r.Model, r.Stream = c.Model, c.Stream != nil && *c.Stream
			err = validateChat(&c.ChatRequest)
		}
	case OpEmbed:
		var e embedBody
		if err = strict(body, &e); err == nil {
			r.Embed = &e.EmbedRequest
			r.Model = e.Model
			err = validateEmbed(&e.EmbedRequest)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := validateModel(r.Model); err != nil {
		return nil, err
	}
	return r, nil
}

func strict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%v", jsonErr(err))
	}
	if dec.More() {
		return invalid("body holds more than one JSON value")
	}
	return nil
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		for _, embedded := range []string{"GenerateRequest.", "ChatRequest.", "EmbedRequest."} {
			field = strings.TrimPrefix(field, embedded)
		}
		return fmt.Sprintf("field %q must be %s, not %s", field, te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func validateModel(m string) error {
	switch {
	case m == "":
		return invalid("model is required")
	case len(m) > 200:
		return invalid("model name is longer than 200 characters")
	case strings.Contains(m, ".."), strings.HasPrefix(m, "/"), strings.ContainsAny(m, " \t\r\n\\"):
		return invalid("model name %q is not a valid model name", m)
	}
	return nil
}

func validateGenerate(g *api.GenerateRequest) error {
	if strings.TrimSpace(g.Prompt) == "" && len(g.Images) == 0 {
		return invalid("prompt is empty")
	}
	return validateOptions(g.Options)
}

func validateChat(c *api.ChatRequest) error {
	if len(c.Messages) == 0 {
		return invalid("messages is empty")
	}
	for i, m := range c.Messages {
		switch m.Role {
		case "system", "user", "assistant", "tool":
		default:
			return invalid("messages[%d].role %q is not system, user, assistant or tool", i, m.Role)
		}
	}
	return validateOptions(c.Options)
}

func validateEmbed(e *api.EmbedRequest) error {
	inputs, err := EmbedInputs(e)
	if err != nil {
		return err
	}
	if len(inputs) == 0 {
		return invalid("input is empty")
	}
	for i, s := range inputs {
		if s == "" {
			return invalid("input[%d] is empty", i)
		}
	}
	return validateOptions(e.Options)
}

// EmbedInputs returns the inputs of an embed request as a list: a string
// input is a list of one.
func EmbedInputs(e *api.EmbedRequest) ([]string, error) {
	switch v := e.Input.(type) {
	case string:
		return []string{v}, nil
	case []string:
		return v, nil
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, invalid("input[%d] must be a string", i)
			}
			out[i] = s
		}
		return out, nil
	case nil:
		return nil, invalid("input is required")
	}
	return nil, invalid("input must be a string or a list of strings")
}

// integer options and their inclusive bounds.
var intOptions = map[string][2]float64{
	"num_ctx":     {1, 1 << 20},
	"num_predict": {-2, 1 << 20},
	"num_keep":    {-1, 1 << 20},
	"top_k":       {0, 1 << 20},
	"num_batch":   {1, 1 << 16},
	"num_thread":  {0, 1024},
	"seed":        {math.MinInt64, math.MaxInt64},
}

// knownOptions are the option names Ollama's api.Options (and its Runner
// part) accept; a typo would otherwise be ignored by Ollama silently.
var knownOptions = func() map[string]bool {
	known := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				known[name] = true
			}
		}
	}
	walk(reflect.TypeFor[api.Options]())
	return known
}()

func validateOptions(opts map[string]any) error {
	for k := range opts {
		if !knownOptions[k] {
			return invalid("options.%s is not an Ollama option", k)
		}
	}
	for k, v := range opts {
		if b, ok := intOptions[k]; ok {
			f, isNum := v.(float64)
			if !isNum || f != math.Trunc(f) || f < b[0] || f > b[1] {
				return invalid("options.%s must be an integer from %.0f to %.0f", k, b[0], b[1])
			}
		}
		if k == "temperature" {
			f, isNum := v.(float64)
			if !isNum || f < 0 || f > 100 {
				return invalid("options.temperature must be a number from 0 to 100")
			}
		}
	}
	return nil
}

// Options returns the request's options map (nil when none).
func (r *Request) Options() map[string]any {
	switch r.Op {
	case OpGenerate:
		return r.Generate.Options
	case OpChat:
		return r.Chat.Options
	}
	return r.Embed.Options
}

// SetOption sets one option, creating the map when needed.
func (r *Request) SetOption(k string, v any) {
	var m *map[string]any
	switch r.Op {
	case OpGenerate:
		m = &r.Generate.Options
	case OpChat:
		m = &r.Chat.Options
	default:
		m = &r.Embed.Options
	}
	if *m == nil {
		*m = map[string]any{}
	}
	(*m)[k] = v
}

// Reproducible reports whether the same request gives the same answer:
// embeddings always, generations when temperature is 0 or a seed is set.
func (r *Request) Reproducible() bool {
	if r.Op == OpEmbed {
		return true
	}
	opts := r.Options()
	if _, ok := opts["seed"]; ok {
		return true
	}
	t, ok := opts["temperature"].(float64)
	return ok && t == 0
}
