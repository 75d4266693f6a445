package request

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRunnerOptions(t *testing.T) {
	want := []string{"f16_kv", "logits_all", "low_vram", "main_gpu", "num_batch", "num_ctx", "num_gpu", "num_thread", "use_mlock", "use_mmap", "vocab_only"}
	if strings.Join(RunnerOptions, ",") != strings.Join(want, ",") {
		t.Errorf("RunnerOptions = %v, want api.Runner's fields %v", RunnerOptions, want)
	}
}

// TestRunnerAdmit: every runner option and keep_alive is removed (replace)
// or refused naming it (refuse); other options stay, and the key of a
// request whose options were replaced is the key of one that never set them.
func TestRunnerAdmit(t *testing.T) {
	plain := `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993}}`
	for _, tt := range []struct {
		name, body string
		refused    string // what the refusal names; empty when none
	}{
		{"none", plain, ""},
		{"num_thread", `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993,"num_thread":2}}`, "options.num_thread"},
		{"num_gpu", `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993,"num_gpu":0}}`, "options.num_gpu"},
		{"num_batch", `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993,"num_batch":64}}`, "options.num_batch"},
		{"use_mlock", `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993,"use_mlock":true}}`, "options.use_mlock"},
		{"use_mmap", `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993,"use_mmap":false}}`, "options.use_mmap"},
		{"num_ctx", `{"model":"m","prompt":"hi","options":{"temperature":0,"seed":9007199254740993,"num_ctx":1048576}}`, "options.num_ctx"},
		{"keep_alive", `{"model":"m","prompt":"hi","keep_alive":0,"options":{"temperature":0,"seed":9007199254740993}}`, "keep_alive"},
		{"several", `{"model":"m","prompt":"hi","keep_alive":"5m","options":{"temperature":0,"seed":9007199254740993,"num_gpu":1,"low_vram":true}}`, "options.low_vram, options.num_gpu, keep_alive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode([]byte(tt.body), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Runner{Mode: RunnerRefuse}.Admit(r)
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("refuse: %v, want admitted", err)
			case tt.refused != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.refused+": herd sets")):
				t.Errorf("refuse: %v, want ErrInvalid naming %s", err, tt.refused)
			}

			r, _ = Decode([]byte(tt.body), Limits{})
			e, err := Runner{}.Admit(r)
			if err != nil {
				t.Fatalf("replace: %v", err)
			}
			p, _ := Decode([]byte(plain), Limits{})
			if r.Key("d") != p.Key("d") {
				t.Errorf("replace: key %v differs from the key of the request without runner options: a replaced option splits the key", r.Options())
			}
			body, err := e.Body([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(body); got != `{"model":"m","options":{"seed":9007199254740993,"temperature":0},"prompt":"hi"}` && tt.refused != "" {
				t.Errorf("replace: body %s, want the runner options and keep_alive gone, the seed exact", got)
			}
		})
	}
}

// TestRunnerLimit: num_predict absent gets the cap, within it stays, above
// it or unlimited is refused naming the cap; embeddings and uncapped
// models are left alone.
func TestRunnerLimit(t *testing.T) {
	p := Runner{DefaultMaxPredict: 2048, MaxPredict: map[string]int{"small": 64}}
	for _, tt := range []struct {
		name, body string
		want       float64 // num_predict after; 0: refused
		wantErr    string
	}{
		{"absent", `{"model":"m","prompt":"hi"}`, 2048, ""},
		{"absent, model's cap", `{"model":"small","prompt":"hi"}`, 64, ""},
		{"within", `{"model":"m","prompt":"hi","options":{"num_predict":16}}`, 16, ""},
		{"at the cap", `{"model":"small","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":64}}`, 64, ""},
		{"above", `{"model":"small","prompt":"hi","options":{"num_predict":65}}`, 0, `above the cap of "small", 64 tokens`},
		{"above default", `{"model":"m","prompt":"hi","options":{"num_predict":4096}}`, 0, "2048 tokens"},
		{"infinite", `{"model":"m","prompt":"hi","options":{"num_predict":-1}}`, 0, `unlimited generation; "m" generates at most 2048 tokens`},
		{"fill context", `{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":-2}}`, 0, "at most 2048"},
		{"zero", `{"model":"m","prompt":"hi","options":{"num_predict":0}}`, 0, "at most 2048"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode([]byte(tt.body), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			e, err := p.Limit(r)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Limit: %v, want ErrInvalid with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Options()["num_predict"]; got != tt.want {
				t.Errorf("num_predict %v, want %v", got, tt.want)
			}
			body, _ := e.Body([]byte(tt.body))
			if r2, _ := Decode(body, Limits{}); r2.Key("") != r.Key("") {
				t.Errorf("body %s does not hold what was admitted", body)
			}
			if strings.Contains(tt.name, "absent") {
				// Absent and the cap run the same: one key.
				atCap, _ := Decode([]byte(strings.Replace(tt.body, `"hi"`, fmt.Sprintf(`"hi","options":{"num_predict":%.0f}`, tt.want), 1)), Limits{})
				if atCap.Key("") != r.Key("") {
					t.Errorf("a request without num_predict and one at the cap have different keys")
				}
			}
		})
	}
	e, _ := Decode([]byte(`{"model":"m","input":"x","options":{"num_predict":-1}}`), Limits{})
	if _, err := p.Limit(e); err != nil || e.Options()["num_predict"] != float64(-1) {
		t.Errorf("embed: %v, %v: want it left alone", err, e.Options())
	}
	u, _ := Decode([]byte(`{"model":"m","prompt":"hi","options":{"num_predict":-1}}`), Limits{})
	if _, err := (Runner{}).Limit(u); err != nil {
		t.Errorf("no cap configured: %v", err)
	}
}

// TestRunnerClamp: a worker never refuses; it lowers num_predict to the cap.
func TestRunnerClamp(t *testing.T) {
	p := Runner{DefaultMaxPredict: 100}
	for body, want := range map[string]float64{
		`{"model":"m","prompt":"hi"}`:                               100,
		`{"model":"m","prompt":"hi","options":{"num_predict":7}}`:   7,
		`{"model":"m","prompt":"hi","options":{"num_predict":500}}`: 100,
		`{"model":"m","prompt":"hi","options":{"num_predict":-1}}`:  100,
	} {
		r, _ := Decode([]byte(body), Limits{})
		p.Clamp(r)
		if got := r.Options()["num_predict"]; got != want {
			t.Errorf("%s: num_predict %v, want %v", body, got, want)
		}
	}
}
