package testmodel

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Token types as stored in tokenizer.ggml.token_type (llama.cpp's
// llama_token_type).
const (
	tokenNormal  = 1
	tokenUnknown = 2
	tokenControl = 3
	tokenByte    = 6
)

// Special token ids.
const (
	unkID = 0
	bosID = 1
	eosID = 2
)

// spaceMarker is SentencePiece's word-boundary marker (U+2581).
const spaceMarker = "\u2581"

// words are the whole-word pieces of the vocabulary. Every prefix of
// "▁"+word is also a piece, so that llama.cpp's SentencePiece merger (which
// only merges pairs whose concatenation is in the vocabulary) can build the
// whole word from its characters.
var words = []string{
	"the", "a", "an", "and", "of", "to", "in", "is", "it", "that",
	"for", "on", "with", "as", "was", "at", "by", "be", "this", "from",
	"or", "are", "not", "but", "have", "you", "we", "they", "he", "she",
	"hello", "world", "herd", "llama", "model", "test", "data", "fast", "slow", "quick",
	"red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "river", "stone",
	"light", "one", "two", "three", "yes", "no", "good", "day", "night", "time",
}

// vocabEntry is one token of the vocabulary.
type vocabEntry struct {
	text  string
	score float32
	kind  int32
	// group numbers the distinct texts that normal tokens decode to, with
	// the marker read as a space and surrounding space trimmed ("a" and
	// "▁a" share a group); it is -1 for other tokens.
	group int
}

// vocabulary is the fixed tokenizer shared by every Size: <unk>, <s>, </s>,
// the 256 byte tokens, then normal pieces (the marker, letters, digits,
// punctuation and the words above with their prefixes).
var vocabulary = buildVocabulary()

func buildVocabulary() []vocabEntry {
	v := []vocabEntry{
		{"<unk>", 0, tokenUnknown, -1},
		{"<s>", 0, tokenControl, -1},
		{"</s>", 0, tokenControl, -1},
	}
	for b := range 256 {
		v = append(v, vocabEntry{fmt.Sprintf("<0x%02X>", b), 0, tokenByte, -1})
	}
	seen := make(map[string]bool, 512)
	for _, e := range v {
		seen[e.text] = true
	}
	var pieces []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			pieces = append(pieces, p)
		}
	}
	add(spaceMarker)
	for c := 'a'; c <= 'z'; c++ {
		add(string(c))
	}
	for c := 'A'; c <= 'Z'; c++ {
		add(string(c))
	}
	for c := '0'; c <= '9'; c++ {
		add(string(c))
	}
	for _, c := range ".,!?;:'\"-()" {
		add(string(c))
	}
	for _, w := range words {
		full := spaceMarker + w
		// Prefixes from "▁x" up to the whole word, in order.
		for i := len(spaceMarker); i < len(full); {
			_, n := utf8.DecodeRuneInString(full[i:])
			i += n
			add(full[:i])
		}
	}
	// SentencePiece scores are log-probabilities: earlier pieces are more
	// likely. llama.cpp merges the highest-scoring pair first.
	groups := make(map[string]int)
	for i, p := range pieces {
		text := strings.TrimSpace(strings.ReplaceAll(p, spaceMarker, " "))
		g, ok := groups[text]
		if !ok {
			g = len(groups)
			groups[text] = g
		}
		v = append(v, vocabEntry{p, -float32(i + 1), tokenNormal, g})
	}
	return v
}

// suppressed reports whether the model must never generate token id.
func suppressed(id int) bool {
	return vocabulary[id].kind != tokenNormal
}
