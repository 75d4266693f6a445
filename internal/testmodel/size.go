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
}

// Tiny is the smallest preset: about 0.6 MB, it loads in well under a
// second and generates hundreds of tokens per second on a CPU.
var Tiny = Size{
	Name:        "herd-tiny",
	Layers:      2,
	Embedding:   64,
	Heads:       4,
	FeedForward: 128,
	Context:     2048,
}

// Slow is a larger preset (about 51 MB) whose generation is many times
// slower than Tiny's; use it to keep an Ollama server busy on purpose.
var Slow = Size{
	Name:        "herd-slow",
	Layers:      8,
	Embedding:   512,
	Heads:       8,
	FeedForward: 768,
	Context:     2048,
}

// Limits that keep a Size from describing an absurdly large file.
const (
	minEmbedding   = 32 // reserved channels plus room for free ones
	maxLayers      = 256
	maxEmbedding   = 8192
	maxFeedForward = 32768
	maxContext     = 1 << 20
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
	if s.Heads > 0 && s.Embedding > 0 {
		if s.Embedding%s.Heads != 0 {
			errs = append(errs, fmt.Errorf("testmodel: Embedding %d is not a multiple of Heads %d", s.Embedding, s.Heads))
		} else if (s.Embedding/s.Heads)%2 != 0 {
			errs = append(errs, fmt.Errorf("testmodel: head size %d (Embedding/Heads) is odd", s.Embedding/s.Heads))
		}
	}
	if len(errs) == 0 {
		if n := s.params() * 4; n > maxFileBytes {
			errs = append(errs, fmt.Errorf("testmodel: %d bytes of weights is too large (limit %d)", n, int64(maxFileBytes)))
		}
	}
	return errors.Join(errs...)
}

// params returns the number of weights in a model of size s.
func (s Size) params() int64 {
	e, f, v := int64(s.Embedding), int64(s.FeedForward), int64(len(vocabulary))
	perLayer := 2*e + 4*e*e + 3*e*f
	return 2*e*v + e + int64(s.Layers)*perLayer
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
