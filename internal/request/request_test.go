package request

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		op     Op
		stream bool
		errHas string
	}{
		{"generate", `{"model":"m","prompt":"hi"}`, OpGenerate, false, ""},
		{"generate stream", `{"model":"m","prompt":"hi","stream":true}`, OpGenerate, true, ""},
		{"chat by messages", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, OpChat, false, ""},
		{"embed by input", `{"model":"m","input":["a","b"]}`, OpEmbed, false, ""},
		{"embed string", `{"model":"m","input":"a"}`, OpEmbed, false, ""},
		{"explicit op", `{"op":"generate","model":"m","prompt":"x"}`, OpGenerate, false, ""},
		{"malformed", `{"model":`, "", false, "not a JSON object"},
		{"unknown op", `{"op":"fly","model":"m","prompt":"x"}`, "", false, `op "fly"`},
		{"missing model", `{"prompt":"x"}`, "", false, "model is required"},
		{"empty prompt", `{"model":"m","prompt":"  "}`, "", false, "prompt is empty"},
		{"unknown field", `{"model":"m","prompt":"x","temprature":1}`, "", false, "unknown field"},
		{"wrong type", `{"model":"m","prompt":5}`, "", false, "prompt"},
		{"bad role", `{"model":"m","messages":[{"role":"god","content":"x"}]}`, "", false, "role"},
		{"empty input", `{"model":"m","input":[]}`, "", false, "input is empty"},
		{"input not strings", `{"model":"m","input":[1]}`, "", false, "input[0]"},
		{"negative num_ctx", `{"model":"m","prompt":"x","options":{"num_ctx":-1}}`, "", false, "num_ctx"},
		{"path model", `{"model":"../etc/passwd","prompt":"x"}`, "", false, "not a valid model"},
		{"two values", `{"model":"m","prompt":"x"} {}`, "", false, "after top-level value"},
		{"empty body", ``, "", false, "empty"},
		{"oversized", `{"model":"m","prompt":"` + strings.Repeat("x", 2000) + `"}`, "", false, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode([]byte(tt.body), Limits{MaxBytes: 1024})
			if tt.errHas != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Decode error = %v; want one containing %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Op != tt.op || r.Stream != tt.stream || r.Model != "m" {
				t.Fatalf("got op %s stream %v model %q", r.Op, r.Stream, r.Model)
			}
		})
	}
}

func key(t *testing.T, body, digest string) string {
	t.Helper()
	r, err := Decode([]byte(body), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Key(digest)
}

func TestKey(t *testing.T) {
	base := key(t, `{"model":"m","prompt":"hi","options":{"temperature":0,"num_ctx":2048}}`, "d1")
	same := []string{
		`{"model":"m","prompt":"hi","options":{"num_ctx":2048,"temperature":0}}`,
		`{"model":"m","prompt":"hi","stream":true,"options":{"num_ctx":2048,"temperature":0}}`,
		`{"model":"m","prompt":"hi","keep_alive":"5m","options":{"num_ctx":2048.0,"temperature":0}}`,
	}
	for _, b := range same {
		if k := key(t, b, "d1"); k != base {
			t.Errorf("%s: key differs, want same", b)
		}
	}
	diff := []string{
		`{"model":"m","prompt":"hi","options":{"temperature":0,"num_ctx":4096}}`,
		`{"model":"m","prompt":"hi","options":{"temperature":0,"num_ctx":2048,"seed":1}}`,
		`{"model":"m","prompt":"hi!","options":{"temperature":0,"num_ctx":2048}}`,
		`{"model":"m2","prompt":"hi","options":{"temperature":0,"num_ctx":2048}}`,
		`{"model":"m","prompt":"hi","system":"s","options":{"temperature":0,"num_ctx":2048}}`,
		`{"model":"m","prompt":"hi","format":"json","options":{"temperature":0,"num_ctx":2048}}`,
	}
	for _, b := range diff {
		if k := key(t, b, "d1"); k == base {
			t.Errorf("%s: key equals base, want different", b)
		}
	}
	if key(t, `{"model":"m","prompt":"hi","options":{"temperature":0,"num_ctx":2048}}`, "d2") == base {
		t.Error("a different model digest shares the key")
	}
}

func TestReproducible(t *testing.T) {
	for body, want := range map[string]bool{
		`{"model":"m","prompt":"x"}`:                                        false,
		`{"model":"m","prompt":"x","options":{"temperature":0}}`:            true,
		`{"model":"m","prompt":"x","options":{"temperature":0.7}}`:          false,
		`{"model":"m","prompt":"x","options":{"temperature":0.7,"seed":3}}`: true,
		`{"model":"m","input":"x"}`:                                         true,
	} {
		r, err := Decode([]byte(body), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Reproducible() != want {
			t.Errorf("%s: Reproducible = %v", body, !want)
		}
	}
}

func TestDecodeOptionsAndMessages(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"m","prompt":"x","options":{"num_ctxx":1}}`: "options.num_ctxx is not an Ollama option",
		`null`:                     "not a JSON object",
		`{"model":"m","prompt":5}`: `field "prompt" must be string`,
		`{"model":"m","prompt":"x","options":{"num_thread":2,"stop":["a"]}}`: "",
	} {
		_, err := Decode([]byte(body), Limits{})
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", body, err, want)
		}
	}
}
