package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/testmodel"
	"github.com/sutazai/herd/internal/wire"
)

// askOptions checks herd ask's flags and returns the call options of
// --cache and --header; a Herd-Timeout header sets *timeout.
func askOptions(op, priority, cache, system, format string, headers []string, timeout *time.Duration) ([]client.CallOption, error) {
	if !slices.Contains([]string{"generate", "chat", "embed"}, op) {
		return nil, fmt.Errorf("--op %q is not generate, chat or embed", op)
	}
	if op == "embed" && (system != "" || format != "") {
		return nil, errors.New("--system and --format are for generate and chat, not embed")
	}
	if format != "" && askFormat(format) == nil {
		return nil, fmt.Errorf(`--format %q is not "json" or a JSON schema object`, format)
	}
	p := wire.Priority(priority)
	if !p.Valid() {
		return nil, fmt.Errorf("--priority %q is not high, normal or low", priority)
	}
	opts := []client.CallOption{client.At(p)}
	if cache != "" {
		if !validCache(cache) {
			return nil, fmt.Errorf("--cache %q is not auto, off or refresh", cache)
		}
		opts = append(opts, client.Cache(cache))
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q is not K=V", h)
		}
		bad := func(err error) error { return fmt.Errorf("--header %s: %w", k, err) }
		switch {
		case strings.EqualFold(k, wire.HdrMsgID):
			if !wire.ValidToken(v) {
				return nil, bad(fmt.Errorf("request id %q must be 1-128 characters of A-Z a-z 0-9 _ = -", v))
			}
			opts = append(opts, client.RequestID(v))
		case strings.EqualFold(k, wire.HdrTimeout):
			d, err := time.ParseDuration(v)
			if err == nil && d <= 0 {
				err = fmt.Errorf("%s is not positive", v)
			}
			if err != nil {
				return nil, bad(err)
			}
			*timeout = d
		case strings.EqualFold(k, wire.HdrDeadline):
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, bad(err)
			}
			opts = append(opts, client.Deadline(t))
		case strings.EqualFold(k, wire.HdrCache):
			if !validCache(v) {
				return nil, bad(fmt.Errorf("%q is not auto, off or refresh", v))
			}
			opts = append(opts, client.Cache(v))
		case strings.EqualFold(k, wire.HdrCacheTTL):
			d, err := time.ParseDuration(v)
			if err == nil && d <= 0 {
				err = fmt.Errorf("%s is not positive", v)
			}
			if err != nil {
				return nil, bad(err)
			}
			opts = append(opts, client.CacheTTL(d))
		default:
			return nil, fmt.Errorf("--header %s: herd reads only %s, %s, %s, %s and %s", k,
				wire.HdrMsgID, wire.HdrTimeout, wire.HdrDeadline, wire.HdrCache, wire.HdrCacheTTL)
		}
	}
	return opts, nil
}

func validCache(policy string) bool {
	return slices.Contains([]string{"auto", "off", "refresh"}, policy)
}

// askFormat returns the request's format for --format: "json", or a JSON
// schema object as it is; nil when it is neither.
func askFormat(format string) json.RawMessage {
	if format == "json" {
		return json.RawMessage(`"json"`)
	}
	var schema map[string]any
	if json.Unmarshal([]byte(format), &schema) != nil {
		return nil
	}
	return json.RawMessage(format)
}

// defaultModel is the model herd ask asks for without --model: the first
// of the configuration's models kept warm, else the first listed, else the
// generated herd-tiny.
func defaultModel(c config.Config) string {
	for _, m := range c.Models {
		if m.Priority {
			return m.Name
		}
	}
	if len(c.Models) > 0 {
		return c.Models[0].Name
	}
	return testmodel.Tiny.Name
}

// readPrompt returns the prompt of args, where "-" stands for in; with no
// args the prompt is all of in. A terminal is read only for an explicit
// "-": with no args it is a usage error, not a silent wait.
func readPrompt(args []string, in io.Reader) (string, error) {
	if len(args) > 0 && !slices.Contains(args, "-") {
		return strings.Join(args, " "), nil
	}
	if f, ok := in.(*os.File); ok && len(args) == 0 && isTerminal(f) {
		return "", usageError(errors.New("no prompt: give it as arguments, or on standard input (a pipe, or -)"))
	}
	b, err := io.ReadAll(in)
	if err != nil {
		return "", fmt.Errorf("read the prompt from standard input: %w", err)
	}
	text := strings.TrimRight(string(b), "\r\n")
	if len(args) == 0 {
		if strings.TrimSpace(text) == "" {
			return "", usageError(errors.New("no prompt: standard input was empty"))
		}
		return text, nil
	}
	parts := slices.Clone(args)
	for i, a := range parts {
		if a == "-" {
			parts[i] = text
		}
	}
	return strings.Join(parts, " "), nil
}
