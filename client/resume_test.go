package client

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestRest: a streaming caller whose stream broke gets, from the stored
// answer, only the text it has not seen, with the answer's other fields;
// an answer that does not continue what it saw is refused.
func TestRest(t *testing.T) {
	gen := func(s string, done bool) []byte {
		b, _ := json.Marshal(map[string]any{"model": "m", "response": s, "done": done})
		return b
	}
	chat := func(s string, done bool) []byte {
		b, _ := json.Marshal(map[string]any{"model": "m", "message": map[string]any{"role": "assistant", "content": s}, "done": done})
		return b
	}
	chatCalls := func(s string, names ...string) []byte {
		var calls []map[string]any
		for _, n := range names {
			calls = append(calls, map[string]any{"function": map[string]any{"name": n, "arguments": map[string]any{}}})
		}
		b, _ := json.Marshal(map[string]any{"model": "m", "message": map[string]any{"role": "assistant", "content": s, "tool_calls": calls}, "done": true})
		return b
	}
	chatCall := func(name string) []byte { return chatCalls("", name) }
	for _, tc := range []struct {
		name     string
		streamed [][]byte
		whole    []byte
		want     string // the text of the final chunk
		err      error
	}{
		{"generate, cut mid-stream", [][]byte{gen("Hel", false), gen("lo, ", false)}, gen("Hello, world", true), "world", nil},
		{"generate, only the final chunk lost", [][]byte{gen("Hello", false)}, gen("Hello", true), "", nil},
		{"generate, nothing streamed", nil, gen("Hello", true), "Hello", nil},
		{"chat, cut mid-stream", [][]byte{chat("Bon", false)}, chat("Bonjour", true), "jour", nil},
		{"chat, a tool call streamed", [][]byte{chatCall("weather")}, chatCalls("", "weather", "clock"), "", nil},
		{"another sample stored", [][]byte{gen("Hi", false)}, gen("Hello", true), "", errNotContinued},
		{"not JSON", [][]byte{gen("Hi", false)}, []byte("nope"), "", errors.New("any")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rest(tc.streamed, tc.whole)
			if tc.err != nil {
				if err == nil || (errors.Is(tc.err, errNotContinued) && !errors.Is(err, errNotContinued)) {
					t.Fatalf("rest = %s, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			text, _, err := textOf(got)
			if err != nil || text != tc.want {
				t.Fatalf("final chunk %s: text %q, want %q (%v)", got, text, tc.want, err)
			}
			if tc.name == "chat, a tool call streamed" {
				var r struct {
					Message struct {
						ToolCalls []struct {
							Function struct{ Name string } `json:"function"`
						} `json:"tool_calls"`
					} `json:"message"`
				}
				if json.Unmarshal(got, &r) != nil || len(r.Message.ToolCalls) != 1 || r.Message.ToolCalls[0].Function.Name != "clock" {
					t.Fatalf("final chunk %s: want only the call not streamed yet (clock)", got)
				}
			}
			var f struct {
				Model string `json:"model"`
				Done  bool   `json:"done"`
			}
			if json.Unmarshal(got, &f) != nil || f.Model != "m" || !f.Done {
				t.Fatalf("final chunk %s lost the answer's other fields", got)
			}
		})
	}
}
