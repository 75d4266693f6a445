package request

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/ollama/ollama/api"
)

// RunnerOptions are the options that configure Ollama's runner rather
// than one generation: the fields of api.Runner (num_ctx, num_batch,
// num_gpu, main_gpu, low_vram, f16_kv, logits_all, vocab_only, use_mmap,
// use_mlock, num_thread). A loaded model serves every caller, and Ollama
// reloads it whenever one of these differs from the loaded runner's
// (server/sched.go, needsReload), so they are herd's to set, not an
// agent's. keep_alive, a field of the request, is herd's too: 0 unloads
// the model for everyone.
var RunnerOptions = func() []string {
	var names []string
	t := reflect.TypeFor[api.Runner]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}()

// Modes of Runner.Mode.
const (
	// RunnerReplace removes an agent's runner options and keep_alive; the
	// worker runs the request with herd's.
	RunnerReplace = "replace"
	// RunnerRefuse refuses a request that sets a runner option or
	// keep_alive.
	RunnerRefuse = "refuse"
)

// Runner is herd's policy for what an agent may not set: the runner
// options and keep_alive (Mode), and how long a generation may be (the
// num_predict cap).
type Runner struct {
	// Mode is RunnerReplace or RunnerRefuse; empty means RunnerReplace.
	Mode string
	// MaxPredict caps num_predict per model; a model not in it gets
	// DefaultMaxPredict.
	MaxPredict map[string]int
	// DefaultMaxPredict caps num_predict of the other models; 0 or less
	// means no cap.
	DefaultMaxPredict int
}

// Cap returns the num_predict cap of model; 0 means none.
func (p Runner) Cap(model string) int {
	if n, ok := p.MaxPredict[model]; ok && n > 0 {
		return n
	}
	return max(p.DefaultMaxPredict, 0)
}

// Edit is a change herd made to a request, to be made to its JSON body as
// well (Body), so that the body a worker runs is the request herd admitted.
type Edit struct {
	// Drop are the options removed.
	Drop []string
	// DropKeepAlive says keep_alive was removed.
	DropKeepAlive bool
	// NumPredict, when positive, is the num_predict set.
	NumPredict int
}

// Body returns body with e made: the dropped options and keep_alive
// removed, num_predict set. Every other value keeps its bytes (so a seed
// above 2^53 stays exact); the object's keys come out sorted.
func (e Edit) Body(body []byte) ([]byte, error) {
	if len(e.Drop) == 0 && !e.DropKeepAlive && e.NumPredict <= 0 {
		return body, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	if e.DropKeepAlive {
		delete(m, "keep_alive")
	}
	opts := map[string]json.RawMessage{}
	if raw, ok := m["options"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &opts); err != nil {
			return nil, fmt.Errorf("options: %w", err)
		}
	}
	for _, k := range e.Drop {
		delete(opts, k)
	}
	if e.NumPredict > 0 {
		opts["num_predict"], _ = json.Marshal(e.NumPredict)
	}
	if len(opts) == 0 {
		delete(m, "options")
	} else {
		m["options"], _ = json.Marshal(opts)
	}
	return json.Marshal(m)
}

// Admit applies the runner policy to a request as its agent sent it. A
// request that sets a runner option or keep_alive is refused (Mode
// RunnerRefuse: the error wraps ErrInvalid and names them) or has them
// removed from r (RunnerReplace; the Edit says which). Call it before herd
// adds settings of its own (an agent profile's num_ctx).
func (p Runner) Admit(r *Request) (Edit, error) {
	var e Edit
	opts := r.Options()
	for _, k := range RunnerOptions {
		if _, ok := opts[k]; ok {
			e.Drop = append(e.Drop, k)
		}
	}
	e.DropKeepAlive = r.keepAlive() != nil
	if len(e.Drop) == 0 && !e.DropKeepAlive {
		return Edit{}, nil
	}
	if p.Mode == RunnerRefuse {
		set := make([]string, 0, len(e.Drop)+1)
		for _, k := range e.Drop {
			set = append(set, "options."+k)
		}
		if e.DropKeepAlive {
			set = append(set, "keep_alive")
		}
		return Edit{}, invalid("%s: herd sets the options that change the shared model runner (%s, keep_alive); leave them out (dispatcher.runner_options is refuse)",
			strings.Join(set, ", "), strings.Join(RunnerOptions, ", "))
	}
	r.Replace()
	return e, nil
}

// Replace removes every runner option and keep_alive from r, so that the
// worker runs it with herd's. It never refuses: a worker replaces what a
// dispatcher let through.
func (r *Request) Replace() {
	opts := r.Options()
	for _, k := range RunnerOptions {
		delete(opts, k)
	}
	switch r.Op {
	case OpGenerate:
		r.Generate.KeepAlive = nil
	case OpChat:
		r.Chat.KeepAlive = nil
	case OpEmbed:
		r.Embed.KeepAlive = nil
	}
}

// keepAlive returns the request's keep_alive; nil when it sets none.
func (r *Request) keepAlive() *api.Duration {
	switch r.Op {
	case OpGenerate:
		return r.Generate.KeepAlive
	case OpChat:
		return r.Chat.KeepAlive
	}
	return r.Embed.KeepAlive
}

// Limit applies the num_predict cap of r's model to a generate or chat
// request: without num_predict it gets the cap (Ollama's own default, -1,
// is unlimited); one above the cap, or unlimited (-1, -2, or 0, which
// Ollama's runner also never stops at), is refused with an error that
// wraps ErrInvalid and names the cap. Embed requests and models without a
// cap are left alone.
func (p Runner) Limit(r *Request) (Edit, error) {
	limit := p.Cap(r.Model)
	if r.Op == OpEmbed || limit <= 0 {
		return Edit{}, nil
	}
	v, ok := r.Options()["num_predict"]
	if !ok {
		r.SetOption("num_predict", float64(limit))
		return Edit{NumPredict: limit}, nil
	}
	n, _ := v.(float64) // Decode checked it is an integer
	switch {
	case n <= 0:
		return Edit{}, invalid("options.num_predict %.0f asks for an unlimited generation; %q generates at most %d tokens (models[].max_predict): give 1 to %d or leave it out",
			n, r.Model, limit, limit)
	case n > float64(limit):
		return Edit{}, invalid("options.num_predict %.0f is above the cap of %q, %d tokens (models[].max_predict): give 1 to %d or leave it out",
			n, r.Model, limit, limit)
	}
	return Edit{}, nil
}

// Clamp is Limit for a request already admitted: a num_predict that is
// absent, unlimited or above the cap (lowered since, or a fallback model's
// lower one) becomes the cap.
func (p Runner) Clamp(r *Request) {
	limit := p.Cap(r.Model)
	if r.Op == OpEmbed || limit <= 0 {
		return
	}
	if n, ok := r.Options()["num_predict"].(float64); ok && n > 0 && n <= float64(limit) {
		return
	}
	r.SetOption("num_predict", float64(limit))
}
