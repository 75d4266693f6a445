package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/wire"
)

// OllamaVersion is the Ollama API version the doors speak, answered on
// /api/version.
const OllamaVersion = "0.6.5"

// Content types of Ollama's answers.
const (
	ctJSON   = "application/json; charset=utf-8"
	ctNDJSON = "application/x-ndjson"
)

// ollamaFraming writes Ollama's answers: NDJSON lines when streaming, one
// JSON object otherwise.
func ollamaFraming(endpoint string, stream bool) framing {
	line := func(b []byte) ([]byte, error) { return append(b, '\n'), nil }
	fr := framing{door: DoorOllama, endpoint: endpoint, stream: stream, contentType: ctJSON, chunk: line,
		final: func(b []byte) ([]byte, error) { return b, nil }, fail: ollamaFail, inStream: ollamaInStream}
	if stream {
		fr.contentType, fr.final = ctNDJSON, line
	}
	return fr
}

func (g *Gateway) ollamaGenerate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c, ok := g.caller(w, r, DoorOllama, "generate", ollamaFail, start)
	if !ok {
		return
	}
	var req api.GenerateRequest
	if !g.decode(w, r, &req, DoorOllama, "generate", ollamaFail, start) {
		return
	}
	stream := req.Stream == nil || *req.Stream // Ollama's default: stream
	req.Stream = &stream
	b, _ := json.Marshal(req)
	g.call(w, r, c, ollamaFraming("generate", stream), withOp("generate", b), start)
}

func (g *Gateway) ollamaChat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c, ok := g.caller(w, r, DoorOllama, "chat", ollamaFail, start)
	if !ok {
		return
	}
	var req api.ChatRequest
	if !g.decode(w, r, &req, DoorOllama, "chat", ollamaFail, start) {
		return
	}
	stream := req.Stream == nil || *req.Stream
	req.Stream = &stream
	b, _ := json.Marshal(req)
	g.call(w, r, c, ollamaFraming("chat", stream), withOp("chat", b), start)
}

func (g *Gateway) ollamaEmbed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c, ok := g.caller(w, r, DoorOllama, "embed", ollamaFail, start)
	if !ok {
		return
	}
	var req api.EmbedRequest
	if !g.decode(w, r, &req, DoorOllama, "embed", ollamaFail, start) {
		return
	}
	b, _ := json.Marshal(req)
	g.call(w, r, c, ollamaFraming("embed", false), withOp("embed", b), start)
}

// ollamaEmbeddings is the older /api/embeddings: one prompt, one vector
// (herd runs it as /api/embed, so the vector is normalised).
func (g *Gateway) ollamaEmbeddings(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c, ok := g.caller(w, r, DoorOllama, "embeddings", ollamaFail, start)
	if !ok {
		return
	}
	var req api.EmbeddingRequest
	if !g.decode(w, r, &req, DoorOllama, "embeddings", ollamaFail, start) {
		return
	}
	b, _ := json.Marshal(api.EmbedRequest{Model: req.Model, Input: req.Prompt, Options: req.Options, KeepAlive: req.KeepAlive})
	fr := ollamaFraming("embeddings", false)
	fr.final = func(b []byte) ([]byte, error) {
		var er api.EmbedResponse
		if err := json.Unmarshal(b, &er); err != nil {
			return nil, err
		}
		return json.Marshal(LegacyEmbedding(er))
	}
	g.call(w, r, c, fr, withOp("embed", b), start)
}

// LegacyEmbedding converts an /api/embed answer of one input to the
// older /api/embeddings answer.
func LegacyEmbedding(r api.EmbedResponse) api.EmbeddingResponse {
	out := api.EmbeddingResponse{Embedding: []float64{}}
	if len(r.Embeddings) > 0 {
		out.Embedding = make([]float64, len(r.Embeddings[0]))
		for i, f := range r.Embeddings[0] {
			out.Embedding[i] = float64(f)
		}
	}
	return out
}

// authorized checks the caller of a request that asks herd nothing (a
// list): with keys, only a valid key may read it.
func (g *Gateway) authorized(w http.ResponseWriter, r *http.Request, door, endpoint string, fail func(Failure) []byte, start time.Time) bool {
	_, ok := g.caller(w, r, door, endpoint, fail, start)
	return ok
}

// ollamaModels lists the served models as /api/tags entries, sorted.
func ollamaModels(models map[string]string) []api.ListModelResponse {
	out := make([]api.ListModelResponse, 0, len(models))
	for name, digest := range models {
		out = append(out, api.ListModelResponse{Name: name, Model: name, Digest: digest})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (g *Gateway) ollamaTags(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !g.authorized(w, r, DoorOllama, "tags", ollamaFail, start) {
		return
	}
	writeJSON(w, api.ListResponse{Models: ollamaModels(g.models())})
	g.m.observe(DoorOllama, "tags", "", start)
}

// ollamaPs answers the models live workers serve (herd keeps them loaded;
// sizes and expiry are not known at the gateway).
func (g *Gateway) ollamaPs(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !g.authorized(w, r, DoorOllama, "ps", ollamaFail, start) {
		return
	}
	ps := api.ProcessResponse{Models: []api.ProcessModelResponse{}}
	for _, m := range ollamaModels(g.models()) {
		ps.Models = append(ps.Models, api.ProcessModelResponse{Name: m.Name, Model: m.Model, Digest: m.Digest})
	}
	writeJSON(w, ps)
	g.m.observe(DoorOllama, "ps", "", start)
}

func (g *Gateway) ollamaShow(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !g.authorized(w, r, DoorOllama, "show", ollamaFail, start) {
		return
	}
	var req api.ShowRequest
	if !g.decode(w, r, &req, DoorOllama, "show", ollamaFail, start) {
		return
	}
	name := req.Model
	if name == "" {
		name = req.Name //nolint:staticcheck // Ollama 0.6.5 clients still send the deprecated name field
	}
	if _, ok := lookupModel(g.models(), name); !ok {
		g.writeFailure(w, DoorOllama, "show", ollamaFail, Failure{Status: http.StatusNotFound, Code: wire.CodeModelNotFound,
			Message: fmt.Sprintf("model '%s' not found", name)}, start)
		return
	}
	writeJSON(w, api.ShowResponse{ModelInfo: map[string]any{}})
	g.m.observe(DoorOllama, "show", "", start)
}

func (g *Gateway) ollamaVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]string{"version": OllamaVersion})
}

// lookupModel finds name among the served models; a name without a tag
// also matches its ":latest".
func lookupModel(models map[string]string, name string) (string, bool) {
	if _, ok := models[name]; ok {
		return name, true
	}
	if _, ok := models[name+":latest"]; ok {
		return name + ":latest", true
	}
	return "", false
}
