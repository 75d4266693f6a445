package request

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
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
	// Window is the num_ctx the request runs in, as the worker sets it
	// (KeyRun), whatever the agent asked.
	Window int `json:"window,omitempty"`
}

// Ran is what a request runs with beyond its body: the model's digest,
// the window (num_ctx) the worker runs the model in (0: unknown), and the
// key's scope (an agent, or "" when shared).
type Ran struct {
	Digest string
	Window int
	Scope  string
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
	return r.KeyRun(Ran{Digest: digest, Scope: scope})
}

// KeyRun is the key of r as it runs: with the worker's window in place of
// any num_ctx the request carries (the worker replaces it), so answers
// computed in another window never share a key.
func (r *Request) KeyRun(ran Ran) string {
	opts := r.Options()
	if ran.Window > 0 && opts["num_ctx"] != nil {
		opts = maps.Clone(opts)
		delete(opts, "num_ctx")
	}
	d := keyDoc{V: 1, Op: r.Op, Model: r.Model, Digest: ran.Digest, Options: opts, Scope: ran.Scope, Window: ran.Window}
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
