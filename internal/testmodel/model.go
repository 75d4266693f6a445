package testmodel

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// DefaultNumPredict is the num_predict PARAMETER written into the Modelfile
// by WriteDir. The model never generates an end-of-sequence token, so
// without a limit Ollama would generate until its own cap of ten times the
// context length; requests may still override it with options.num_predict.
const DefaultNumPredict = 256

// ModelfileName is the name of the Modelfile written by WriteDir.
const ModelfileName = "Modelfile"

// Model constants.
//
// The residual stream has three kinds of channels. Channel 0 holds the
// constant biasValue; channels 1..codeChannels hold a one-hot code of the
// current token's group (see vocabEntry.group); the remaining "free"
// channels carry ordinary random embeddings. The layers neither read the
// reserved channels (their norm weights there are 0) nor write them (the
// matching rows of attn_output and ffn_down are 0), so after the final norm
// the output projection sees them unchanged: through channel 0 it drives the
// logits of special and byte tokens far negative, and through the code
// channels it drives far down the logits of every token whose group has
// the current token's group number modulo codeChannels. The model therefore never emits a special or byte token and
// never emits two tokens with the same text in a row (Ollama aborts a
// generation after 30 such repeats).
const (
	rmsEpsilon = 1e-5
	ropeBase   = 10000
	seed       = 0x6865726474657374 // "herdtest"

	biasValue    = 1
	codeChannels = 8
	reserved     = 1 + codeChannels

	// suppressWeight is the channel-0 output weight of tokens that must
	// never be generated.
	suppressWeight = -1e4
	// repeatWeight is the output weight from a token's own code channel.
	repeatWeight = -1e3
)

// Write writes s as a GGUF v3 llama model to w, after checking it with
// Validate. The bytes depend only on s: every call with the same Size
// writes the same bytes, on every platform.
func Write(w io.Writer, s Size) error {
	if err := s.Validate(); err != nil {
		return err
	}
	return writeGGUF(w, metadata(s), tensors(s))
}

// WriteDir writes the model file <s.Name>.gguf and the Modelfile that
// imports it (see Modelfile) into dir, creating dir and its parents when
// they do not exist. Both files are written atomically (temporary file,
// then rename). It returns the Modelfile's path, suitable for
// `ollama create <s.Name> -f <path>`.
func WriteDir(dir string, s Size) (modelfile string, err error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	ggufName := s.Name + ".gguf"
	if err := writeFileAtomic(filepath.Join(dir, ggufName), func(w io.Writer) error {
		return Write(w, s)
	}); err != nil {
		return "", err
	}
	content := Modelfile(s)
	modelfile = filepath.Join(dir, ModelfileName)
	if err := writeFileAtomic(modelfile, func(w io.Writer) error {
		_, err := io.WriteString(w, content)
		return err
	}); err != nil {
		return "", err
	}
	return modelfile, nil
}

// Modelfile returns the text of the Modelfile that WriteDir writes for s:
// FROM ./<s.Name>.gguf, then PARAMETER lines setting num_ctx to s.Context,
// num_predict to DefaultNumPredict and, if s.Threads is positive,
// num_thread to s.Threads. Sampling parameters are left at Ollama's
// defaults; requests that need reproducible output should set temperature
// to 0.
func Modelfile(s Size) string {
	var b strings.Builder
	fmt.Fprintf(&b, "FROM ./%s.gguf\n", s.Name)
	fmt.Fprintf(&b, "PARAMETER num_ctx %d\n", s.Context)
	fmt.Fprintf(&b, "PARAMETER num_predict %d\n", DefaultNumPredict)
	if s.Threads > 0 {
		fmt.Fprintf(&b, "PARAMETER num_thread %d\n", s.Threads)
	}
	return b.String()
}

// writeFileAtomic writes path via a temporary file in the same directory,
// renamed into place only when fully written.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("testmodel: writing %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("testmodel: %w", err)
	}
	return nil
}

// metadata returns the GGUF key/value pairs for s.
func metadata(s Size) []kv {
	n := len(vocabulary)
	tokens := make([]string, n)
	scores := make([]float32, n)
	types := make([]int32, n)
	for i, e := range vocabulary {
		tokens[i], scores[i], types[i] = e.text, e.score, e.kind
	}
	u := func(v int) uint32 { return uint32(v) }
	fileType := 0 // LLAMA_FTYPE_ALL_F32
	if s.F16 {
		fileType = 1 // LLAMA_FTYPE_MOSTLY_F16
	}
	return []kv{
		{"general.architecture", "llama"},
		{"general.name", s.Name},
		{"general.alignment", u(ggufAlignment)},
		{"general.file_type", u(fileType)},
		{"llama.vocab_size", u(n)},
		{"llama.context_length", u(s.Context)},
		{"llama.embedding_length", u(s.Embedding)},
		{"llama.block_count", u(s.Layers)},
		{"llama.feed_forward_length", u(s.FeedForward)},
		{"llama.attention.head_count", u(s.Heads)},
		{"llama.attention.head_count_kv", u(s.Heads)},
		{"llama.attention.layer_norm_rms_epsilon", float32(rmsEpsilon)},
		{"llama.rope.dimension_count", u(s.Embedding / s.Heads)},
		{"llama.rope.freq_base", float32(ropeBase)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", u(bosID)},
		{"tokenizer.ggml.eos_token_id", u(eosID)},
		{"tokenizer.ggml.unknown_token_id", u(unkID)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
	}
}

// tensors returns the tensors of s in file order. Matrices are [in, out] in
// GGUF order: each of the out rows holds in contiguous weights.
func tensors(s Size) []tensor {
	e, f, v := uint64(s.Embedding), uint64(s.FeedForward), uint64(len(vocabulary))
	// Scale the layers' writes to the residual stream down with depth so
	// that its magnitude stays bounded (as in GPT-2's initialisation).
	depth := float32(1 / math.Sqrt(2*float64(s.Layers)))
	vector := func(name string, fill func([]float32)) tensor {
		return tensor{name: name, dims: []uint64{e}, fill: fill}
	}
	matrix := func(name string, in, out uint64, fill func([]float32)) tensor {
		return tensor{name: name, dims: []uint64{in, out}, f16: s.F16, fill: fill}
	}
	ts := []tensor{
		matrix("token_embd.weight", e, v, func(d []float32) {
			random(d, "token_embd.weight", 1)
			for id := range v {
				r := d[id*e : (id+1)*e]
				clear(r[:reserved])
				r[0] = biasValue
				if g := vocabulary[id].group; g >= 0 {
					r[1+g%codeChannels] = 1
				}
			}
		}),
		vector("output_norm.weight", ones),
		matrix("output.weight", e, v, func(d []float32) {
			random(d, "output.weight", fanIn(e-reserved))
			for id := range v {
				r := d[id*e : (id+1)*e]
				clear(r[:reserved])
				switch g := vocabulary[id].group; {
				case suppressed(int(id)):
					clear(r)
					r[0] = suppressWeight
				case g >= 0:
					r[1+g%codeChannels] = repeatWeight
				}
			}
		}),
	}
	for l := range s.Layers {
		name := func(n string) string { return fmt.Sprintf("blk.%d.%s.weight", l, n) }
		// reads is a matrix that reads the residual stream (only its free
		// channels matter: the norm before it zeroes the others).
		reads := func(n string, out uint64) tensor {
			nm := name(n)
			return matrix(nm, e, out, func(d []float32) {
				random(d, nm, fanIn(e-reserved))
			})
		}
		// writes is a matrix that writes the residual stream, except its
		// reserved channels.
		writes := func(n string, in uint64) tensor {
			nm := name(n)
			return matrix(nm, in, e, func(d []float32) {
				random(d, nm, fanIn(in)*depth)
				clear(d[:reserved*in])
			})
		}
		ts = append(ts,
			vector(name("attn_norm"), freeOnly),
			reads("attn_q", e),
			reads("attn_k", e),
			reads("attn_v", e),
			writes("attn_output", e),
			vector(name("ffn_norm"), freeOnly),
			reads("ffn_gate", f),
			reads("ffn_up", f),
			writes("ffn_down", f),
		)
	}
	return ts
}

func ones(d []float32) {
	for i := range d {
		d[i] = 1
	}
}

// freeOnly is the weight of the in-layer norms: 1 for the free channels
// and 0 for the reserved ones, which the layers must not see.
func freeOnly(d []float32) {
	ones(d)
	clear(d[:reserved])
}

// fanIn returns the half-width of a uniform distribution with variance
// 1/in (so a layer roughly preserves the scale of its input).
func fanIn(in uint64) float32 {
	return float32(math.Sqrt(3 / float64(in)))
}

// random fills d with values uniform in [-scale, scale), from a splitmix64
// stream seeded by the tensor's name.
func random(d []float32, name string, scale float32) {
	h := fnv.New64a()
	h.Write([]byte(name))
	state := seed ^ h.Sum64()
	for i := range d {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		// 24 random bits as an exact float32 in [-1, 1).
		u := float32(int32(z>>40)-(1<<23)) / (1 << 23)
		d[i] = u * scale
	}
}
