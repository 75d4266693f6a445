package request_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sutazai/herd/internal/request"
)

// emptyKey is the hex SHA-256 of no bytes: what Key would return if the
// canonical document failed to encode, so every such request would share it.
const emptyKey = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

var fuzzLimits = request.Limits{MaxBytes: 1 << 16}

// FuzzDecode: no input makes Decode panic, and whatever it accepts is a
// valid request with a well-formed, stable cache key.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"hi"}`,
		`{"model":"m","prompt":"hi","stream":true,"options":{"temperature":0,"num_ctx":2048}}`,
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}`,
		`{"model":"m","input":["a","b"],"truncate":false}`,
		`{"op":"embed","model":"m","input":"a"}`,
		`{"model":"m","images":["aGk="]}`,
		`{"model":"m","prompt":"x","format":{"type":"object","properties":{"b":{},"a":{}}}}`,
		`{"model":"m","prompt":"x","context":[1,2,3],"raw":true,"keep_alive":"5m"}`,
		`{"model":"m","prompt":"x","options":{"seed":-9223372036854775808}}`,
		`{"model":"m","prompt":"x","options":{"num_ctx":1e400}}`,
		`{"model":"\u002e\u002e/etc","prompt":"x"}`,
		`{"model":"m","prompt":"\ud800\u0000"}`,
		`{"model":null,"prompt":null,"options":null}`,
		`{"model":"m","messages":[null]}`,
		`{"model":"a","model":"b","prompt":"x"}`,
		"\xef\xbb\xbf{\"model\":\"m\",\"prompt\":\"x\"}",
		"{\"model\":\"m\",\"prompt\":\"\xff\"}",
		`null`, `[]`, `"x"`, `1`, ``,
		`{"model":"m","prompt":"x","options":{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}`,
	} {
		f.Add([]byte(s), "sha256:d1")
	}
	f.Fuzz(func(t *testing.T, body []byte, digest string) {
		r, err := request.Decode(body, fuzzLimits)
		if err != nil {
			if r != nil {
				t.Fatalf("Decode returned a request and error %v", err)
			}
			return
		}
		switch r.Op {
		case request.OpGenerate:
			if r.Generate == nil || r.Chat != nil || r.Embed != nil {
				t.Fatalf("op generate with parts %v %v %v", r.Generate != nil, r.Chat != nil, r.Embed != nil)
			}
		case request.OpChat:
			if r.Chat == nil || r.Generate != nil || r.Embed != nil {
				t.Fatalf("op chat with parts %v %v %v", r.Generate != nil, r.Chat != nil, r.Embed != nil)
			}
		case request.OpEmbed:
			if r.Embed == nil || r.Generate != nil || r.Chat != nil {
				t.Fatalf("op embed with parts %v %v %v", r.Generate != nil, r.Chat != nil, r.Embed != nil)
			}
		default:
			t.Fatalf("accepted op %q", r.Op)
		}
		if r.Model == "" {
			t.Fatalf("accepted an empty model: %q", body)
		}
		k := r.Key(digest)
		if b, err := hex.DecodeString(k); err != nil || len(b) != 32 || k != strings.ToLower(k) {
			t.Fatalf("key %q is not 64 lower-case hex characters", k)
		}
		if k == emptyKey {
			t.Fatalf("key is the hash of nothing (the canonical document did not encode): %q", body)
		}
		if k2 := r.Key(digest); k2 != k {
			t.Fatalf("key not stable across calls: %s then %s", k, k2)
		}
		_ = r.Reproducible()
		r2, err := request.Decode(body, fuzzLimits)
		if err != nil {
			t.Fatalf("second Decode of the same bytes failed: %v", err)
		}
		if k2 := r2.Key(digest); k2 != k {
			t.Fatalf("decoding the same bytes twice gave keys %s and %s", k, k2)
		}
	})
}

// FuzzKey: the cache key ignores the order and spacing of options and
// changes when an option's value does.
func FuzzKey(f *testing.F) {
	f.Add("m", "hi", int32(2048), int32(42), 0.0, "")
	f.Add("llama3.2:3b", "héllo \u0000 \"quoted\"", int32(1), int32(-1), 0.7, "\n\t ")
	f.Add("m", "", int32(0), int32(0), 100.0, " ")
	f.Add("m", "x", int32(1<<20), int32(math.MaxInt32), 1e-300, "\r\n")
	f.Fuzz(func(t *testing.T, model, prompt string, numCtx, seed int32, temp float64, space string) {
		// Only JSON whitespace may separate tokens.
		ws := strings.Map(func(r rune) rune {
			if strings.ContainsRune(" \t\r\n", r) {
				return r
			}
			return -1
		}, space)
		m, err1 := json.Marshal(model)
		p, err2 := json.Marshal(prompt)
		tv, err3 := json.Marshal(temp)
		if err1 != nil || err2 != nil || err3 != nil {
			return // NaN or Inf temperature has no JSON form
		}
		body := func(opts ...string) []byte {
			var b bytes.Buffer
			fmt.Fprintf(&b, `{"model":%s,"prompt":%s,"options":{`, m, p)
			for i, o := range opts {
				if i > 0 {
					b.WriteString(ws + "," + ws)
				}
				b.WriteString(ws + o + ws)
			}
			b.WriteString("}}")
			return b.Bytes()
		}
		ctxOpt := fmt.Sprintf(`"num_ctx":%d`, numCtx)
		seedOpt := fmt.Sprintf(`"seed":%d`, seed)
		tempOpt := `"temperature"` + ws + ":" + ws + string(tv)

		a := body(ctxOpt, seedOpt, tempOpt)
		ra, errA := request.Decode(a, request.Limits{})
		for _, other := range [][]byte{body(tempOpt, ctxOpt, seedOpt), body(seedOpt, tempOpt, ctxOpt)} {
			rb, errB := request.Decode(other, request.Limits{})
			if (errA == nil) != (errB == nil) {
				t.Fatalf("reordered options decode differently:\n%s: %v\n%s: %v", a, errA, other, errB)
			}
			if errA == nil && ra.Key("d") != rb.Key("d") {
				t.Fatalf("reordered options change the key:\n%s\n%s", a, other)
			}
		}
		if errA != nil {
			return
		}
		for _, changed := range [][]byte{
			body(fmt.Sprintf(`"num_ctx":%d`, int64(numCtx)+1), seedOpt, tempOpt),
			body(ctxOpt, fmt.Sprintf(`"seed":%d`, int64(seed)-1), tempOpt),
			body(ctxOpt, seedOpt, fmt.Sprintf(`"temperature":%v`, nextUp(temp))),
			body(ctxOpt, seedOpt, tempOpt, `"top_k":1`),
		} {
			rc, err := request.Decode(changed, request.Limits{})
			if err != nil {
				continue // the changed value is out of range
			}
			if rc.Key("d") == ra.Key("d") {
				t.Fatalf("a changed option kept the key:\n%s\n%s", a, changed)
			}
		}
		if ra.Key("d") == ra.Key("e") {
			t.Fatal("a changed model digest kept the key")
		}
	})
}

// nextUp returns, as JSON, a number other than x.
func nextUp(x float64) string {
	y := x + 1
	if y == x {
		y = math.Nextafter(x, math.Inf(1))
	}
	b, _ := json.Marshal(y)
	return string(b)
}
