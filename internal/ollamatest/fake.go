package ollamatest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"
)

// EmbeddingDims is the length of every vector the server returns.
const EmbeddingDims = 8

// defaultTemperature is Ollama's default sampling temperature, assumed when
// a request does not set options.temperature.
const defaultTemperature = 0.8

// modifiedAt is the fixed modification time reported for every model.
var modifiedAt = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Embedding returns the vector the server answers for text on /api/embed
// and /api/embeddings: EmbeddingDims components derived from FNV-1a hashes
// of text, normalised to unit length like Ollama does. Different texts give
// different vectors; the same text always gives the same vector.
func Embedding(text string) []float32 {
	v := make([]float32, EmbeddingDims)
	var sum float64
	for i := range v {
		h := fnv.New64a()
		h.Write([]byte{byte(i)})
		h.Write([]byte(text))
		x := float64(h.Sum64())/math.MaxUint64*2 - 1 // in [-1, 1]
		v[i] = float32(x)
		sum += x * x
	}
	if sum > 0 {
		n := float32(1 / math.Sqrt(sum))
		for i := range v {
			v[i] *= n
		}
	}
	return v
}

// Digest returns the digest GET /api/tags and /api/ps report for model: the
// hex SHA-256 of its normalised name (lower case, ":latest" added when
// untagged), so "tiny" and "tiny:latest" have the same digest.
func Digest(model string) string {
	sum := sha256.Sum256([]byte(modelKey(model)))
	return hex.EncodeToString(sum[:])
}

// answer applies the request options to the deterministic reply text. When
// options.seed is set and the temperature (default 0.8) is above zero it
// appends " [seed=N]"; a positive options.num_predict truncates the reply
// to that many words with done_reason "length". It returns the text and
// the done_reason.
func answer(text string, opts map[string]any) (string, string) {
	temp := defaultTemperature
	if t, ok := number(opts["temperature"]); ok {
		temp = t
	}
	if seed, ok := number(opts["seed"]); ok && temp > 0 {
		text += fmt.Sprintf(" [seed=%d]", int64(seed))
	}
	if n, ok := number(opts["num_predict"]); ok && n > 0 {
		if chunks := splitWords(text); len(chunks) > int(n) {
			return strings.Join(chunks[:int(n)], ""), "length"
		}
	}
	return text, "stop"
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// splitWords splits s into one piece per word, each carrying the whitespace
// before it, so that concatenating the pieces gives back s exactly. It is
// how replies are streamed and how eval_count is computed.
func splitWords(s string) []string {
	var starts, ends []int // byte offsets where words begin and end
	prevSpace := true
	for i, r := range s {
		sp := unicode.IsSpace(r)
		switch {
		case !sp && prevSpace:
			starts = append(starts, i)
		case sp && !prevSpace:
			ends = append(ends, i)
		}
		prevSpace = sp
	}
	if len(starts) == 0 {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	out := make([]string, len(starts))
	for i := range out {
		begin, end := 0, len(s)
		if i > 0 {
			begin = ends[i-1]
		}
		if i < len(out)-1 {
			end = ends[i]
		}
		out[i] = s[begin:end]
	}
	return out
}

// countWords is the fake's token count: the number of whitespace-separated
// words.
func countWords(s string) int { return len(strings.Fields(s)) }

// metrics returns synthetic but plausible timings: load 1ms, 100µs per
// prompt token, 1ms per generated token, and a total that is the real
// elapsed time (including injected latency) but never less than their sum.
func metrics(start time.Time, promptTokens, evalTokens int) api.Metrics {
	m := api.Metrics{
		LoadDuration:       time.Millisecond,
		PromptEvalCount:    promptTokens,
		PromptEvalDuration: time.Duration(promptTokens) * 100 * time.Microsecond,
		EvalCount:          evalTokens,
		EvalDuration:       time.Duration(evalTokens) * time.Millisecond,
	}
	m.TotalDuration = max(time.Since(start), m.LoadDuration+m.PromptEvalDuration+m.EvalDuration)
	return m
}

// parameterCount is a deterministic fake parameter count (0.1B–8B).
func parameterCount(display string) int64 {
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(display)))
	return int64(1+h.Sum32()%80) * 100_000_000
}

func details(display string) api.ModelDetails {
	return api.ModelDetails{
		Format:            "gguf",
		Family:            "fake",
		Families:          []string{"fake"},
		ParameterSize:     fmt.Sprintf("%.1fB", float64(parameterCount(display))/1e9),
		QuantizationLevel: "Q4_0",
	}
}

// listEntry is the /api/tags entry for a model (display form of its name).
func listEntry(display string) api.ListModelResponse {
	return api.ListModelResponse{
		Name:       display,
		Model:      display,
		ModifiedAt: modifiedAt,
		Size:       parameterCount(display) * 5 / 8, // ~4.5 bits per weight
		Digest:     Digest(display),
		Details:    details(display),
	}
}

func showResponse(display string) *api.ShowResponse {
	return &api.ShowResponse{
		Modelfile:  fmt.Sprintf("# Modelfile generated by ollamatest\nFROM %s\nTEMPLATE {{ .Prompt }}\n", display),
		Parameters: fmt.Sprintf("temperature %g", defaultTemperature),
		Template:   "{{ .Prompt }}",
		Details:    details(display),
		ModelInfo: map[string]any{
			"general.architecture":    "fake",
			"general.parameter_count": parameterCount(display),
			"fake.context_length":     4096,
			"fake.embedding_length":   EmbeddingDims,
		},
		Capabilities: []model.Capability{model.CapabilityCompletion, model.CapabilityEmbedding},
		ModifiedAt:   modifiedAt,
	}
}
