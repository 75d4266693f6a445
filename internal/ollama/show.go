package ollama

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"
)

// DefaultNumCtx is the window Ollama (v0.6.5) runs a model in when neither
// the call nor the model's Modelfile sets num_ctx: OLLAMA_CONTEXT_LENGTH,
// whose default this is. Ollama lowers it to the model's trained context
// length when that is smaller.
const DefaultNumCtx = 2048

// ModelDefaults are the runner settings a model runs with when a call
// sets none: its Modelfile's parameters, else Ollama's defaults.
type ModelDefaults struct {
	// NumCtx is the Modelfile's num_ctx, else DefaultNumCtx, at most the
	// trained context length. Always positive.
	NumCtx int
	// NumThread is the Modelfile's num_thread; 0 when it sets none
	// (Ollama then picks from the machine's cores).
	NumThread int
	// ContextLength is the trained context length (model_info
	// <architecture>.context_length); 0 when Ollama does not say.
	ContextLength int
}

// Defaults reads model's defaults from Ollama's /api/show. It blocks for
// one call and returns its error (a *StatusError with 404 for a model
// Ollama does not have).
func Defaults(ctx context.Context, c *api.Client, model string) (ModelDefaults, error) {
	show, err := c.Show(ctx, &api.ShowRequest{Model: model})
	if err != nil {
		return ModelDefaults{}, fmt.Errorf("show %s: %w", model, err)
	}
	return ParseDefaults(show), nil
}

// ParseDefaults returns the defaults an /api/show answer describes.
func ParseDefaults(show *api.ShowResponse) ModelDefaults {
	var d ModelDefaults
	if arch, ok := show.ModelInfo["general.architecture"].(string); ok {
		d.ContextLength = number(show.ModelInfo[arch+".context_length"])
	}
	// Parameters is one "name value" per line, as `ollama show
	// --parameters` prints them.
	for line := range strings.SplitSeq(show.Parameters, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n <= 0 {
			continue
		}
		switch f[0] {
		case "num_ctx":
			d.NumCtx = n
		case "num_thread":
			d.NumThread = n
		}
	}
	if d.NumCtx == 0 {
		d.NumCtx = DefaultNumCtx
	}
	if d.ContextLength > 0 && d.NumCtx > d.ContextLength {
		d.NumCtx = d.ContextLength
	}
	return d
}

// number returns v as a positive int, or 0: model_info values decode as
// float64 from JSON.
func number(v any) int {
	switch n := v.(type) {
	case float64:
		return max(int(n), 0)
	case int:
		return max(n, 0)
	case int64:
		return max(int(n), 0)
	case uint32:
		return int(n)
	case uint64:
		return int(n)
	}
	return 0
}
