package dispatcher

import (
	"encoding/json"
	"testing"
)

func TestAutoBody(t *testing.T) {
	tests := []struct {
		name, body string
		numCtx     int
		want       string // the options after, as JSON
	}{
		{"no options: profile's num_ctx", `{"model":"auto","prompt":"x"}`, 2048, `{"num_ctx":2048}`},
		{"null options", `{"model":"auto","prompt":"x","options":null}`, 2048, `{"num_ctx":2048}`},
		{"own num_ctx kept", `{"model":"auto","prompt":"x","options":{"num_ctx":512,"seed":9007199254740993}}`, 2048, `{"num_ctx":512,"seed":9007199254740993}`},
		{"other options kept", `{"model":"auto","prompt":"x","options":{"seed":9007199254740993}}`, 4096, `{"num_ctx":4096,"seed":9007199254740993}`},
		{"no profile num_ctx", `{"model":"auto","prompt":"x"}`, 0, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := autoBody([]byte(tt.body), "llama3.2:3b", tt.numCtx)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			if string(m["model"]) != `"llama3.2:3b"` || string(m["prompt"]) != `"x"` {
				t.Errorf("body %s", out)
			}
			if got := string(m["options"]); tt.want != "" && got != tt.want {
				t.Errorf("options %s, want %s", got, tt.want)
			} else if tt.want == "" && got != "" {
				t.Errorf("options %s, want none", got)
			}
		})
	}
	if _, err := autoBody([]byte(`{"model":"auto","options":[1]}`), "m", 2048); err == nil {
		t.Error("options that are not an object: no error")
	}
}
