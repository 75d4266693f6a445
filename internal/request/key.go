package request

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// keyDoc is what the cache key hashes: everything that changes the answer,
// nothing that does not (stream, keep_alive).
type keyDoc struct {
	V        int             `json:"v"`
	Op       Op              `json:"op"`
	Model    string          `json:"model"`
	Digest   string          `json:"digest,omitempty"`
	Prompt   string          `json:"prompt,omitempty"`
	Suffix   string          `json:"suffix,omitempty"`
	System   string          `json:"system,omitempty"`
	Template string          `json:"template,omitempty"`
	Context  []int           `json:"context,omitempty"`
	Raw      bool            `json:"raw,omitempty"`
	Format   json.RawMessage `json:"format,omitempty"`
	Images   [][]byte        `json:"images,omitempty"`
	Messages any             `json:"messages,omitempty"`
	Tools    any             `json:"tools,omitempty"`
	Input    []string        `json:"input,omitempty"`
	Truncate *bool           `json:"truncate,omitempty"`
	Options  map[string]any  `json:"options,omitempty"`
	// Scope is the agent whose answers the key is private to, or empty
	// when answers are shared (KeyFor).
	Scope string `json:"scope,omitempty"`
}

// Key returns the cache key of r for a model with the given digest (empty
// when unknown): the hex SHA-256 of a canonical JSON document of
// everything that changes the answer. json.Marshal sorts map keys, so the
// order of options in the body does not matter.
func (r *Request) Key(digest string) string { return r.KeyFor(digest, "") }

// KeyFor is Key private to scope: requests of different scopes (agents)
// never share a key, so neither a cached answer nor a coalesced call.
// An empty scope is Key.
func (r *Request) KeyFor(digest, scope string) string {
	d := keyDoc{V: 1, Op: r.Op, Model: r.Model, Digest: digest, Options: r.Options(), Scope: scope}
	switch r.Op {
	case OpGenerate:
		g := r.Generate
		d.Prompt, d.Suffix, d.System, d.Template = g.Prompt, g.Suffix, g.System, g.Template
		d.Context, d.Raw, d.Format = g.Context, g.Raw, compact(g.Format)
		for _, img := range g.Images {
			d.Images = append(d.Images, img)
		}
	case OpChat:
		d.Messages, d.Tools, d.Format = r.Chat.Messages, r.Chat.Tools, compact(r.Chat.Format)
	case OpEmbed:
		d.Input, _ = EmbedInputs(r.Embed)
		d.Truncate = r.Embed.Truncate
	}
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func compact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return raw
		}
		return buf.Bytes()
	}
	b, _ := json.Marshal(v) // sorts object keys
	return b
}
