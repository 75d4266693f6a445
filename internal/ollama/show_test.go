package ollama

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ollama/ollama/api"
)

func TestParseDefaults(t *testing.T) {
	for _, tt := range []struct {
		name string
		show api.ShowResponse
		want ModelDefaults
	}{
		{"modelfile num_ctx and num_thread", api.ShowResponse{
			Parameters: "num_ctx                        2048\nnum_predict                    256\nnum_thread                     1\nstop                           \"<|end|>\"",
			ModelInfo:  map[string]any{"general.architecture": "llama", "llama.context_length": 131072.0},
		}, ModelDefaults{NumCtx: 2048, NumThread: 1, ContextLength: 131072}},
		{"no parameters: Ollama's default, not the trained length", api.ShowResponse{
			ModelInfo: map[string]any{"general.architecture": "qwen2", "qwen2.context_length": 32768.0},
		}, ModelDefaults{NumCtx: DefaultNumCtx, ContextLength: 32768}},
		{"default above the trained length", api.ShowResponse{
			ModelInfo: map[string]any{"general.architecture": "tiny", "tiny.context_length": 512.0},
		}, ModelDefaults{NumCtx: 512, ContextLength: 512}},
		{"nothing known", api.ShowResponse{Parameters: "num_ctx -1\ntemperature 0.7"}, ModelDefaults{NumCtx: DefaultNumCtx}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseDefaults(&tt.show); got != tt.want {
				t.Errorf("ParseDefaults = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDefaultsNotFound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"model 'x' not found"}`, http.StatusNotFound)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Defaults(t.Context(), c, "x"); err == nil {
		t.Fatal("Defaults of a missing model: no error")
	} else if code, _ := Classify(err); code != "model_not_found" {
		t.Errorf("Defaults of a missing model: %v, classified %q", err, code)
	}
}
