package testmodel

import (
	"errors"
	"fmt"
)

// Size describes the shape of a generated model. The number of key/value
// heads always equals Heads (no grouped-query attention).
type Size struct {
	// Name is the model name recorded in general.name, used as the base of
	// the .gguf file name by WriteDir, and the name the model is expected
	// to be created under in Ollama. It must be a valid lowercase Ollama
	// model name without a tag: [a-z0-9] followed by [a-z0-9._-].
	Name string
	// Layers is the number of transformer blocks (llama.block_count).
	Layers int
	// Embedding is the hidden size (llama.embedding_length), at least 32.
	// It must be a multiple of Heads, and Embedding/Heads must be even
	// (RoPE rotates pairs of dimensions).
	Embedding int
	// Heads is the number of attention heads (llama.attention.head_count
	// and llama.attention.head_count_kv).
	Heads int
	// FeedForward is the hidden size of the SwiGLU feed-forward network
	// (llama.feed_forward_length).
	FeedForward int
	// Context is the training context length (llama.context_length); the
	// Modelfile written by WriteDir also uses it as num_ctx.
	Context int
	// F16 stores the weight matrices (including the embedding and output
	// matrices, not the norm vectors) as IEEE half-precision floats
	// (general.file_type 1) instead of F32 (general.file_type 0). On a CPU
	// Ollama takes about as long per weight either way, so F16 gets about
	// twice the work out of each byte of file.
	F16 bool
	// Threads, if positive, is the num_thread PARAMETER of the Modelfile:
	// the number of CPU threads Ollama uses to run the model. Zero leaves
	// Ollama's default (the number of physical cores). The presets use 1:
	// ggml's threads wait for each other after every operation, which for
	// models this small costs far more than it gains, and on a busy machine
	// (parallel tests) made Tiny 10 to 100 times slower and erratic, while
	// one thread runs it at a steady few thousand tokens per second.
	Threads int
}

// Tiny is the smallest preset: a 0.6 MB all-F32 model that Ollama loads in
// about 0.3 s and runs at a few thousand tokens per second on one thread
// (about 2500-4000 on the 2-core machine it was measured on).
var Tiny = Size{
	Name:        "herd-tiny",
	Layers:      2,
	Embedding:   64,
	Heads:       4,
	FeedForward: 128,
	Context:     2048,
	Threads:     1,
}

// Slow is a 56 MB F16 preset, for keeping an Ollama server busy on purpose:
// it loads in about a second but generates only about 25-50 tokens per
// second on one thread (measured on the same machine as Tiny, which is
// over 50 times faster), so a request with the default num_predict of 256
// keeps a runner busy for several seconds.
var Slow = Size{
	Name:        "herd-slow",
	Layers:      8,
	Embedding:   512,
	Heads:       8,
	FeedForward: 1536,
	Context:     2048,
	F16:         true,
	Threads:     1,
}

// Limits that keep a Size from describing an absurdly large file.
const (
	minEmbedding   = 32 // reserved channels plus room for free ones
	maxLayers      = 256
	maxEmbedding   = 8192
	maxFeedForward = 32768
	maxContext     = 1 << 20
	maxThreads     = 1024
	maxFileBytes   = 4 << 30
)

// Validate reports whether s describes a model that Write can generate and
// Ollama can load. It returns nil for a valid Size.
func (s Size) Validate() error {
	var errs []error
	if err := validateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	check := func(what string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("testmodel: %s = %d, want %d..%d", what, v, lo, hi))
		}
	}
	check("Layers", s.Layers, 1, maxLayers)
	check("Embedding", s.Embedding, minEmbedding, maxEmbedding)
	check("Heads", s.Heads, 1, maxEmbedding)
	check("FeedForward", s.FeedForward, 1, maxFeedForward)
	check("Context", s.Context, 1, maxContext)
	check("Threads", s.Threads, 0, maxThreads)
	if s.Heads > 0 && s.Embedding > 0 {
		if s.Embedding%s.Heads != 0 {
			errs = append(errs, fmt.Errorf("testmodel: Embedding %d is not a multiple of Heads %d", s.Embedding, s.Heads))
		} else if (s.Embedding/s.Heads)%2 != 0 {
			errs = append(errs, fmt.Errorf("testmodel: head size %d (Embedding/Heads) is odd", s.Embedding/s.Heads))
		}
	}
	if len(errs) == 0 {
		if n := s.weightBytes(); n > maxFileBytes {
			errs = append(errs, fmt.Errorf("testmodel: %d bytes of weights is too large (limit %d)", n, int64(maxFileBytes)))
		}
	}
	return errors.Join(errs...)
}

// weightBytes returns the size of the tensor data of a model of size s,
// ignoring alignment padding.
func (s Size) weightBytes() int64 {
	e, f, v := int64(s.Embedding), int64(s.FeedForward), int64(len(vocabulary))
	vectors := e + int64(s.Layers)*2*e
	matrices := 2*e*v + int64(s.Layers)*(4*e*e+3*e*f)
	if s.F16 {
		return 4*vectors + 2*matrices
	}
	return 4 * (vectors + matrices)
}

func validateName(name string) error {
	if name == "" {
		return errors.New("testmodel: empty Name")
	}
	if len(name) > 64 {
		return fmt.Errorf("testmodel: Name %q is longer than 64 bytes", name)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("testmodel: Name %q: invalid character %q at %d (want [a-z0-9][a-z0-9._-]*)", name, c, i)
		}
	}
	return nil
}
