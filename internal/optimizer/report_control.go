package optimizer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// ControlEntry is one entry of herd_control as a report lists it. Entries
// are read generically, so a kind of decision added later is listed too.
type ControlEntry struct {
	Key string `json:"key"`
	// Kind is the key's first part: breakers, numctx, budget, keepalive...
	Kind string `json:"kind"`
	// Model is the model the key names (hex-encoded in it), if any.
	Model string `json:"model,omitempty"`
	// Value is the entry's JSON value, or a JSON string of a plain one.
	Value json.RawMessage `json:"value"`
	// Reason and At are the value's "reason" and "at", when it has them.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
	// Revision is the entry's revision in the bucket.
	Revision uint64 `json:"revision"`
}

// ReadControl returns every entry of herd_control sorted by key, workers'
// registrations left out and counted.
func ReadControl(ctx context.Context, js jetstream.JetStream) ([]ControlEntry, int, error) {
	kv, err := js.KeyValue(ctx, wire.BucketControl)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", wire.BucketControl, err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return []ControlEntry{}, 0, nil
		}
		return nil, 0, fmt.Errorf("list %s: %w", wire.BucketControl, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out, workers := []ControlEntry{}, 0
	for _, k := range keys {
		if strings.HasPrefix(k, registry.KeyPrefix) {
			workers++
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // deleted meanwhile
			}
			return nil, 0, fmt.Errorf("read %s %s: %w", wire.BucketControl, k, err)
		}
		out = append(out, controlEntry(k, e.Value(), e.Revision()))
	}
	return out, workers, nil
}

// controlEntry decodes one entry generically.
func controlEntry(key string, val []byte, rev uint64) ControlEntry {
	c := ControlEntry{Key: key, Kind: key, Revision: rev}
	if i := strings.IndexByte(key, '.'); i >= 0 {
		c.Kind = key[:i]
		if b, err := hex.DecodeString(key[i+1:]); err == nil && len(b) > 0 && printable(string(b)) {
			c.Model = string(b)
		}
	}
	if json.Valid(val) {
		c.Value = json.RawMessage(val)
		var v struct {
			Model  string    `json:"model"`
			Reason string    `json:"reason"`
			At     time.Time `json:"at"`
		}
		if json.Unmarshal(val, &v) == nil {
			c.Reason, c.At = v.Reason, v.At
			if c.Model == "" {
				c.Model = v.Model
			}
		}
	} else {
		c.Value, _ = json.Marshal(string(val))
	}
	return c
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// summary returns the entry's value in one line: its scalar fields but
// model, reason, at and numbers.
func (c ControlEntry) summary() string {
	var m map[string]any
	if json.Unmarshal(c.Value, &m) != nil {
		var s string
		if json.Unmarshal(c.Value, &s) == nil {
			return s
		}
		return string(c.Value)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		switch k {
		case "model", "reason", "at", "numbers":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		switch v := m[k].(type) {
		case map[string]any, []any:
			b, _ := json.Marshal(v)
			s := string(b)
			if len(s) > 80 {
				s = s[:77] + "..."
			}
			parts = append(parts, k+"="+s)
		case float64:
			parts = append(parts, k+"="+strconv.FormatFloat(v, 'f', -1, 64))
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

func writeDecisions(w io.Writer, entries []ControlEntry, workers int, now time.Time) {
	fmt.Fprintf(w, "decisions in %s (%d; %d worker registrations not listed):\n", wire.BucketControl, len(entries), workers)
	if len(entries) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, e := range entries {
		who := e.Model
		if who == "" {
			who = "-"
		}
		age := ""
		if !e.At.IsZero() {
			age = fmt.Sprintf(" (%s ago)", now.Sub(e.At).Round(time.Second))
		}
		fmt.Fprintf(w, "  %-10s %-16s %s%s\n", e.Kind, who, e.summary(), age)
		if e.Reason != "" {
			fmt.Fprintf(w, "  %-10s %-16s reason: %s\n", "", "", e.Reason)
		}
	}
}
