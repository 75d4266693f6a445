package testmodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Golden SHA-256 digests of the presets. A change to the generator that
// changes them changes every model herd's tests run against: update them
// only on purpose.
const (
	goldenTiny = "c0de5d7d9fe1f70c1a1d29af2fb830ec50b1482cf8ab25beeca1e8af3dd5a37f"
	goldenSlow = "3cf5dc4c201f3acc97d316a6a5c064f1953c065ce310ca63d42bbc804a2a70ed"
)

func write(t testing.TB, s Size) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatalf("Write(%s): %v", s.Name, err)
	}
	return buf.Bytes()
}

func TestDeterministic(t *testing.T) {
	for _, tc := range []struct {
		size   Size
		golden string
	}{{Tiny, goldenTiny}, {Slow, goldenSlow}} {
		t.Run(tc.size.Name, func(t *testing.T) {
			if tc.size.Name == Slow.Name && testing.Short() {
				t.Skip("large model in -short mode")
			}
			var sums [2]string
			for i := range sums {
				h := sha256.New()
				if err := Write(h, tc.size); err != nil {
					t.Fatal(err)
				}
				sums[i] = hex.EncodeToString(h.Sum(nil))
			}
			if sums[0] != sums[1] {
				t.Fatalf("two writes produced different bytes: SHA-256 %s and %s", sums[0], sums[1])
			}
			if sums[0] != tc.golden {
				t.Errorf("SHA-256 = %s, want %s", sums[0], tc.golden)
			}
		})
	}
}

func TestFileSize(t *testing.T) {
	for _, tc := range []struct {
		size     Size
		min, max int
	}{
		{Tiny, 400 << 10, 1 << 20},
		{Slow, 40 << 20, 60 << 20},
	} {
		t.Run(tc.size.Name, func(t *testing.T) {
			if tc.size.Name == Slow.Name && testing.Short() {
				t.Skip("large model in -short mode")
			}
			var n countWriter
			if err := Write(&n, tc.size); err != nil {
				t.Fatal(err)
			}
			if int(n) < tc.min || int(n) > tc.max {
				t.Errorf("size = %d bytes, want %d..%d", n, tc.min, tc.max)
			}
			t.Logf("%s: %d bytes", tc.size.Name, n)
		})
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// ggufFile is the parsed form of a GGUF file.
type ggufFile struct {
	version   uint32
	kv        map[string]any
	keys      []string
	tensors   []tensorInfo
	dataStart uint64
	raw       []byte
}

type tensorInfo struct {
	name   string
	dims   []uint64
	typ    uint32
	offset uint64
}

func (ti tensorInfo) size() uint64 {
	n := uint64(1)
	for _, d := range ti.dims {
		n *= d
	}
	if ti.typ == ggmlTypeF16 {
		return 2 * n
	}
	return 4 * n
}

// floats returns the tensor's data as float32 values.
func (f *ggufFile) floats(t *testing.T, name string) ([]float32, tensorInfo) {
	t.Helper()
	for _, ti := range f.tensors {
		if ti.name != name {
			continue
		}
		b := f.raw[f.dataStart+ti.offset:][:ti.size()]
		var out []float32
		switch ti.typ {
		case ggmlTypeF32:
			for i := 0; i < len(b); i += 4 {
				out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
			}
		case ggmlTypeF16:
			for i := 0; i < len(b); i += 2 {
				out = append(out, halfToFloat(binary.LittleEndian.Uint16(b[i:])))
			}
		default:
			t.Fatalf("tensor %s: unexpected type %d", name, ti.typ)
		}
		return out, ti
	}
	t.Fatalf("no tensor %s", name)
	return nil, tensorInfo{}
}

// halfToFloat decodes an IEEE half-precision value (normal, subnormal or
// zero; the generator writes nothing else).
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	if exp == 0 {
		return sign * float32(math.Ldexp(mant, -24))
	}
	return sign * float32(math.Ldexp(1+mant/1024, exp-15))
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if n < 0 || r.off+n > len(r.b) {
		r.err = fmt.Errorf("truncated at offset %d (want %d more bytes)", r.off, n)
		return make([]byte, n)
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }
func (r *reader) str() string {
	n := r.u64()
	if n > 1<<20 {
		r.err = firstErr(r.err, fmt.Errorf("string length %d at offset %d", n, r.off))
		return ""
	}
	return string(r.next(int(n)))
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (r *reader) value(typ uint32) any {
	switch typ {
	case ggufTypeUint32:
		return r.u32()
	case ggufTypeInt32:
		return int32(r.u32())
	case ggufTypeFloat32:
		return math.Float32frombits(r.u32())
	case ggufTypeBool:
		return r.next(1)[0] != 0
	case ggufTypeString:
		return r.str()
	case ggufTypeArray:
		elem := r.u32()
		n := r.u64()
		if n > 1<<20 {
			r.err = firstErr(r.err, fmt.Errorf("array length %d", n))
			return nil
		}
		switch elem {
		case ggufTypeString:
			out := make([]string, n)
			for i := range out {
				out[i] = r.str()
			}
			return out
		case ggufTypeFloat32:
			out := make([]float32, n)
			for i := range out {
				out[i] = math.Float32frombits(r.u32())
			}
			return out
		case ggufTypeInt32:
			out := make([]int32, n)
			for i := range out {
				out[i] = int32(r.u32())
			}
			return out
		}
		r.err = firstErr(r.err, fmt.Errorf("unexpected array element type %d", elem))
		return nil
	}
	r.err = firstErr(r.err, fmt.Errorf("unexpected value type %d", typ))
	return nil
}

// parseGGUF parses b as a GGUF v3 file, checking its framing.
func parseGGUF(b []byte) (*ggufFile, error) {
	r := &reader{b: b}
	if magic := string(r.next(4)); magic != "GGUF" {
		return nil, fmt.Errorf("magic %q", magic)
	}
	f := &ggufFile{kv: map[string]any{}, raw: b}
	f.version = r.u32()
	nTensors, nKV := r.u64(), r.u64()
	if nTensors > 1<<16 || nKV > 1<<16 {
		return nil, fmt.Errorf("implausible counts: %d tensors, %d keys", nTensors, nKV)
	}
	for range nKV {
		key := r.str()
		typ := r.u32()
		v := r.value(typ)
		if r.err != nil {
			return nil, fmt.Errorf("key %q: %w", key, r.err)
		}
		if _, dup := f.kv[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		f.kv[key] = v
		f.keys = append(f.keys, key)
	}
	for range nTensors {
		var ti tensorInfo
		ti.name = r.str()
		nDims := r.u32()
		if nDims == 0 || nDims > 4 {
			return nil, fmt.Errorf("tensor %q: %d dims", ti.name, nDims)
		}
		for range nDims {
			ti.dims = append(ti.dims, r.u64())
		}
		ti.typ = r.u32()
		ti.offset = r.u64()
		f.tensors = append(f.tensors, ti)
	}
	if r.err != nil {
		return nil, r.err
	}
	align := uint64(32)
	if a, ok := f.kv["general.alignment"].(uint32); ok {
		align = uint64(a)
	}
	f.dataStart = uint64(r.off) + padding(uint64(r.off), align)
	if f.dataStart > uint64(len(b)) {
		return nil, errors.New("no data section")
	}
	if pad := b[r.off:f.dataStart]; bytes.Count(pad, []byte{0}) != len(pad) {
		return nil, errors.New("non-zero header padding")
	}
	// Tensors must be laid out in order, each at the next aligned offset,
	// with zero padding between them and nothing after the last one.
	var next uint64
	for _, ti := range f.tensors {
		want := next + padding(next, align)
		if ti.offset != want {
			return nil, fmt.Errorf("tensor %q at offset %d, want %d", ti.name, ti.offset, want)
		}
		if pad := b[f.dataStart+next : f.dataStart+want]; bytes.Count(pad, []byte{0}) != len(pad) {
			return nil, fmt.Errorf("non-zero padding before tensor %q", ti.name)
		}
		next = ti.offset + ti.size()
	}
	if end := f.dataStart + next; end != uint64(len(b)) {
		return nil, fmt.Errorf("data ends at %d, file is %d bytes", end, len(b))
	}
	return f, nil
}

func TestParseBack(t *testing.T) {
	sizes := []Size{Tiny, Slow, {Name: "odd-shape", Layers: 3, Embedding: 40, Heads: 5, FeedForward: 99, Context: 100, Threads: 3}}
	for _, s := range sizes {
		t.Run(s.Name, func(t *testing.T) {
			if s.Name == Slow.Name && testing.Short() {
				t.Skip("large model in -short mode")
			}
			checkModel(t, s, write(t, s))
		})
	}
}

func checkModel(t *testing.T, s Size, b []byte) {
	f, err := parseGGUF(b)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if f.version != 3 {
		t.Errorf("version = %d, want 3", f.version)
	}

	// Metadata.
	fileType := uint32(0)
	if s.F16 {
		fileType = 1
	}
	n := len(vocabulary)
	want := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           s.Name,
		"general.alignment":                      uint32(32),
		"general.file_type":                      fileType,
		"llama.vocab_size":                       uint32(n),
		"llama.context_length":                   uint32(s.Context),
		"llama.embedding_length":                 uint32(s.Embedding),
		"llama.block_count":                      uint32(s.Layers),
		"llama.feed_forward_length":              uint32(s.FeedForward),
		"llama.attention.head_count":             uint32(s.Heads),
		"llama.attention.head_count_kv":          uint32(s.Heads),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(s.Embedding / s.Heads),
		"llama.rope.freq_base":                   float32(10000),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.bos_token_id":            uint32(1),
		"tokenizer.ggml.eos_token_id":            uint32(2),
		"tokenizer.ggml.unknown_token_id":        uint32(0),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_eos_token":           false,
	}
	for k, v := range want {
		if got, ok := f.kv[k]; !ok {
			t.Errorf("missing key %s", k)
		} else if got != v {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, got, got, v, v)
		}
	}
	tokens, _ := f.kv["tokenizer.ggml.tokens"].([]string)
	scores, _ := f.kv["tokenizer.ggml.scores"].([]float32)
	types, _ := f.kv["tokenizer.ggml.token_type"].([]int32)
	if len(tokens) != n || len(scores) != n || len(types) != n {
		t.Fatalf("tokenizer arrays have %d tokens, %d scores, %d types; want %d each", len(tokens), len(scores), len(types), n)
	}
	if len(f.kv) != len(want)+3 {
		t.Errorf("%d keys, want %d: %v", len(f.kv), len(want)+3, f.keys)
	}
	if tokens[0] != "<unk>" || tokens[1] != "<s>" || tokens[2] != "</s>" {
		t.Errorf("special tokens = %q", tokens[:3])
	}
	if !slices.Equal(types[:3], []int32{tokenUnknown, tokenControl, tokenControl}) {
		t.Errorf("special token types = %v", types[:3])
	}
	seen := map[string]bool{}
	for i, tok := range tokens {
		if tok == "" || seen[tok] {
			t.Errorf("token %d %q is empty or duplicated", i, tok)
		}
		seen[tok] = true
	}
	for c := range 256 {
		id := 3 + c
		if tok := fmt.Sprintf("<0x%02X>", c); tokens[id] != tok || types[id] != tokenByte {
			t.Errorf("token %d = %q type %d, want byte token %q", id, tokens[id], types[id], tok)
		}
	}
	for _, w := range []string{"▁the", "▁hello", "▁world", "a", "z", "▁"} {
		if !seen[w] {
			t.Errorf("vocabulary lacks %q", w)
		}
	}

	// Tensors.
	e, ff, v := uint64(s.Embedding), uint64(s.FeedForward), uint64(n)
	matType := uint32(ggmlTypeF32)
	if s.F16 {
		matType = ggmlTypeF16
	}
	type shape struct {
		dims []uint64
		typ  uint32
	}
	wantTensors := map[string]shape{
		"token_embd.weight":  {[]uint64{e, v}, matType},
		"output_norm.weight": {[]uint64{e}, ggmlTypeF32},
		"output.weight":      {[]uint64{e, v}, matType},
	}
	for l := range s.Layers {
		for name, sh := range map[string]shape{
			"attn_norm":   {[]uint64{e}, ggmlTypeF32},
			"attn_q":      {[]uint64{e, e}, matType},
			"attn_k":      {[]uint64{e, e}, matType},
			"attn_v":      {[]uint64{e, e}, matType},
			"attn_output": {[]uint64{e, e}, matType},
			"ffn_norm":    {[]uint64{e}, ggmlTypeF32},
			"ffn_gate":    {[]uint64{e, ff}, matType},
			"ffn_up":      {[]uint64{e, ff}, matType},
			"ffn_down":    {[]uint64{ff, e}, matType},
		} {
			wantTensors[fmt.Sprintf("blk.%d.%s.weight", l, name)] = sh
		}
	}
	if len(f.tensors) != len(wantTensors) {
		t.Errorf("%d tensors, want %d", len(f.tensors), len(wantTensors))
	}
	for _, ti := range f.tensors {
		sh, ok := wantTensors[ti.name]
		if !ok {
			t.Errorf("unexpected tensor %s", ti.name)
			continue
		}
		delete(wantTensors, ti.name)
		if !slices.Equal(ti.dims, sh.dims) || ti.typ != sh.typ {
			t.Errorf("tensor %s: dims %v type %d, want %v type %d", ti.name, ti.dims, ti.typ, sh.dims, sh.typ)
		}
		if (f.dataStart+ti.offset)%32 != 0 {
			t.Errorf("tensor %s at file offset %d is not 32-byte aligned", ti.name, f.dataStart+ti.offset)
		}
	}
	for name := range wantTensors {
		t.Errorf("missing tensor %s", name)
	}

	// Weight values the model's behaviour depends on.
	if norm, _ := f.floats(t, "output_norm.weight"); slices.ContainsFunc(norm, func(x float32) bool { return x != 1 }) {
		t.Error("output_norm is not all ones")
	}
	for _, name := range []string{"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"} {
		norm, _ := f.floats(t, name)
		for i, x := range norm {
			if wantX := float32(1); i < reserved && x != 0 || i >= reserved && x != wantX {
				t.Errorf("%s[%d] = %v, want 0 for reserved channels, else 1", name, i, x)
			}
		}
	}
	embd, _ := f.floats(t, "token_embd.weight")
	out, _ := f.floats(t, "output.weight")
	for id := range n {
		er, or := embd[id*int(e):][:e], out[id*int(e):][:e]
		if er[0] != biasValue {
			t.Errorf("token %d: embedding channel 0 = %v", id, er[0])
		}
		g := vocabulary[id].group
		for c := 1; c < reserved; c++ {
			wantE, wantO := float32(0), float32(0)
			if g >= 0 && c == 1+g%codeChannels {
				wantE, wantO = 1, repeatWeight
			}
			if er[c] != wantE || or[c] != wantO {
				t.Errorf("token %d: code channel %d: embedding %v output %v, want %v and %v", id, c, er[c], or[c], wantE, wantO)
			}
		}
		if types[id] != tokenNormal {
			if or[0] != suppressWeight || slices.ContainsFunc(or[1:], func(x float32) bool { return x != 0 }) {
				t.Errorf("token %d (%q) is not suppressed in the output", id, tokens[id])
			}
		} else if or[0] != 0 {
			t.Errorf("token %d (%q): output channel 0 = %v, want 0", id, tokens[id], or[0])
		}
	}
	for _, name := range []string{"blk.0.attn_output.weight", "blk.0.ffn_down.weight"} {
		d, ti := f.floats(t, name)
		in := int(ti.dims[0])
		if slices.ContainsFunc(d[:reserved*in], func(x float32) bool { return x != 0 }) {
			t.Errorf("%s writes the reserved channels", name)
		}
		if !slices.ContainsFunc(d[reserved*in:], func(x float32) bool { return x != 0 }) {
			t.Errorf("%s is all zero", name)
		}
	}
	q, _ := f.floats(t, "blk.0.attn_q.weight")
	var sum, sumSq float64
	for _, x := range q {
		sum += float64(x)
		sumSq += float64(x) * float64(x)
	}
	mean, std := sum/float64(len(q)), math.Sqrt(sumSq/float64(len(q)))
	if wantStd := 1 / math.Sqrt(float64(e-reserved)); math.Abs(mean) > wantStd/10 || math.Abs(std-wantStd) > wantStd/5 {
		t.Errorf("attn_q: mean %v std %v, want about 0 and %v", mean, std, wantStd)
	}
}

func TestVocabulary(t *testing.T) {
	ids := map[string]int{}
	for i, e := range vocabulary {
		ids[e.text] = i
	}
	// llama.cpp's SentencePiece tokenizer only merges pairs whose
	// concatenation is a token, so every word needs its whole prefix chain.
	for _, w := range words {
		full := spaceMarker + w
		for i := len(spaceMarker) + 1; i <= len(full); i++ {
			if _, ok := ids[full[:i]]; !ok {
				t.Errorf("word %q: prefix %q is not a token", w, full[:i])
			}
		}
	}
	// Tokens that read the same once trimmed share a group, so the model
	// cannot alternate between them (Ollama counts that as repetition).
	if a, b := vocabulary[ids["a"]].group, vocabulary[ids["▁a"]].group; a != b || a < 0 {
		t.Errorf("groups of %q and %q = %d, %d", "a", "▁a", a, b)
	}
	if a, b := vocabulary[ids["▁the"]].group, vocabulary[ids["▁a"]].group; a == b {
		t.Errorf("%q and %q share group %d", "▁the", "▁a", a)
	}
	normal := 0
	for i, e := range vocabulary {
		if suppressed(i) != (e.kind != tokenNormal) || (e.group >= 0) != (e.kind == tokenNormal) {
			t.Errorf("token %d %q: kind %d group %d suppressed %v", i, e.text, e.kind, e.group, suppressed(i))
		}
		if e.kind == tokenNormal {
			normal++
		}
	}
	if normal < 100 {
		t.Errorf("only %d normal tokens", normal)
	}
}

func TestFloat16(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{0.1, 0x2e66},
		{1.0 / 3, 0x3555},
		{-1e3, 0xe3d0},
		{-1e4, 0xf0e2},
		{65504, 0x7bff},
		{65519, 0x7bff},
		{65520, 0x7c00},
		{1e10, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{float32(math.Ldexp(1, -14)), 0x0400},
		{float32(math.Ldexp(1, -24)), 0x0001},
		{float32(math.Ldexp(1, -25)), 0x0000},
		{float32(math.Ldexp(3, -26)), 0x0001},
		{float32(math.Ldexp(3, -25)), 0x0002},
		{float32(math.Ldexp(1023, -24)), 0x03ff},
		{1 + 1.0/2048, 0x3c00},
		{1 + 3.0/2048, 0x3c02},
		{1e-30, 0x0000},
	} {
		if got := float16bits(tc.in); got != tc.want {
			t.Errorf("float16bits(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if got := float16bits(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("float16bits(NaN) = %#04x", got)
	}
	// Round trip of every finite half value.
	for h := range uint16(0x7c00) {
		for _, x := range []uint16{h, h | 0x8000} {
			if got := float16bits(halfToFloat(x)); got != x {
				t.Fatalf("round trip of %#04x gave %#04x", x, got)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []Size{Tiny, Slow} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	bad := map[string]func(*Size){
		"empty name":         func(s *Size) { s.Name = "" },
		"upper-case name":    func(s *Size) { s.Name = "Herd" },
		"name with slash":    func(s *Size) { s.Name = "a/b" },
		"name with tag":      func(s *Size) { s.Name = "herd:latest" },
		"leading dot":        func(s *Size) { s.Name = ".herd" },
		"long name":          func(s *Size) { s.Name = strings.Repeat("a", 65) },
		"zero layers":        func(s *Size) { s.Layers = 0 },
		"small embedding":    func(s *Size) { s.Embedding, s.Heads = 16, 2 },
		"indivisible heads":  func(s *Size) { s.Heads = 3 },
		"odd head size":      func(s *Size) { s.Embedding, s.Heads = 96, 32 },
		"zero heads":         func(s *Size) { s.Heads = 0 },
		"zero feed-forward":  func(s *Size) { s.FeedForward = 0 },
		"zero context":       func(s *Size) { s.Context = 0 },
		"negative threads":   func(s *Size) { s.Threads = -1 },
		"too large":          func(s *Size) { s.Layers, s.Embedding, s.FeedForward = 256, 8192, 32768 },
		"negative embedding": func(s *Size) { s.Embedding = -64 },
	}
	for name, mutate := range bad {
		s := Tiny
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, s)
		}
		if err := Write(io.Discard, s); err == nil {
			t.Errorf("%s: Write accepted %+v", name, s)
		}
		if _, err := WriteDir(t.TempDir(), s); err == nil {
			t.Errorf("%s: WriteDir accepted %+v", name, s)
		}
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	for _, after := range []int{0, 100, 300 << 10} {
		if err := Write(&failWriter{n: after}, Tiny); err == nil {
			t.Errorf("no error when the writer fails after %d bytes", after)
		}
	}
}

func TestWriteDir(t *testing.T) {
	dir := t.TempDir()
	for range 2 { // the second run replaces the files
		modelfile, err := WriteDir(dir, Tiny)
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, "Modelfile"); modelfile != want {
			t.Errorf("modelfile = %s, want %s", modelfile, want)
		}
		text, err := os.ReadFile(modelfile)
		if err != nil {
			t.Fatal(err)
		}
		wantText := "FROM ./herd-tiny.gguf\nPARAMETER num_ctx 2048\nPARAMETER num_predict 256\nPARAMETER num_thread 1\n"
		if string(text) != wantText {
			t.Errorf("Modelfile:\n%s\nwant:\n%s", text, wantText)
		}
		model, err := os.ReadFile(filepath.Join(dir, "herd-tiny.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(model, write(t, Tiny)) {
			t.Error("herd-tiny.gguf differs from Write's output")
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := []string{"Modelfile", "herd-tiny.gguf"}; !slices.Equal(names, want) {
			t.Errorf("directory holds %q, want %q", names, want)
		}
	}
	for s, want := range map[Size]string{
		Slow: "FROM ./herd-slow.gguf\nPARAMETER num_ctx 2048\nPARAMETER num_predict 256\nPARAMETER num_thread 1\n",
		{Name: "x", Layers: 1, Embedding: 32, Heads: 1, FeedForward: 1, Context: 512}: "FROM ./x.gguf\nPARAMETER num_ctx 512\nPARAMETER num_predict 256\n",
	} {
		if got := Modelfile(s); got != want {
			t.Errorf("Modelfile(%s) = %q, want %q", s.Name, got, want)
		}
	}
	// A directory that does not exist yet is created (`herd testmodel
	// --dir /tmp/m`); a file in the way is an error.
	missing := filepath.Join(dir, "missing", "nested")
	if _, err := WriteDir(missing, Tiny); err != nil {
		t.Errorf("WriteDir into a missing directory: %v", err)
	} else if _, err := os.Stat(filepath.Join(missing, "herd-tiny.gguf")); err != nil {
		t.Error(err)
	}
	if _, err := WriteDir(filepath.Join(dir, "Modelfile"), Tiny); err == nil {
		t.Error("WriteDir into a file succeeded")
	}
}

func BenchmarkWriteTiny(b *testing.B) {
	for b.Loop() {
		if err := Write(io.Discard, Tiny); err != nil {
			b.Fatal(err)
		}
	}
}
