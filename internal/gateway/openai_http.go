package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/wire"
)

// Content types of OpenAI's answers.
const (
	ctOpenAIJSON = "application/json"
	ctSSE        = "text/event-stream"
)

// openaiID is the id of an OpenAI answer: prefix and the request id's
// own part (after "<agent>="), so a retry under one key gets one id.
func openaiID(prefix string, c Caller) string {
	_, own, _ := strings.Cut(c.ID, "=")
	return prefix + own
}

// invalidFailure turns a conversion error into a 400.
func invalidFailure(err error) Failure {
	msg := err.Error()
	if errors.Is(err, errInvalid) {
		msg = strings.TrimPrefix(msg, errInvalid.Error()+": ")
	}
	return Failure{Status: http.StatusBadRequest, Code: wire.CodeInvalidRequest, Message: msg}
}

func (g *Gateway) openaiChat(w http.ResponseWriter, r *http.Request) {
	const ep = "chat_completions"
	start := time.Now()
	c, ok := g.caller(w, r, DoorOpenAI, ep, openaiFail, start)
	if !ok {
		return
	}
	var req ChatCompletionRequest
	if !g.decode(w, r, &req, DoorOpenAI, ep, openaiFail, start) {
		return
	}
	cr, err := ChatRequest(req)
	if err != nil {
		g.writeFailure(w, DoorOpenAI, ep, openaiFail, invalidFailure(err), start)
		return
	}
	id := openaiID("chatcmpl-", c)
	fr := framing{door: DoorOpenAI, endpoint: ep, stream: req.Stream, contentType: ctOpenAIJSON, fail: openaiFail,
		inStream: ErrorEvent}
	if req.Stream {
		s := &ChatStream{ID: id, IncludeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
		events := func(b []byte) ([]byte, error) {
			var resp api.ChatResponse
			if err := json.Unmarshal(b, &resp); err != nil {
				return nil, err
			}
			return s.Events(resp), nil
		}
		fr.contentType, fr.chunk, fr.final = ctSSE, events, events
	} else {
		fr.final = func(b []byte) ([]byte, error) {
			var resp api.ChatResponse
			if err := json.Unmarshal(b, &resp); err != nil {
				return nil, err
			}
			out, err := json.Marshal(ToChatCompletion(id, resp))
			return append(out, '\n'), err
		}
	}
	b, _ := json.Marshal(cr)
	g.call(w, r, c, fr, withOp("chat", b), start)
}

func (g *Gateway) openaiCompletions(w http.ResponseWriter, r *http.Request) {
	const ep = "completions"
	start := time.Now()
	c, ok := g.caller(w, r, DoorOpenAI, ep, openaiFail, start)
	if !ok {
		return
	}
	var req CompletionRequest
	if !g.decode(w, r, &req, DoorOpenAI, ep, openaiFail, start) {
		return
	}
	gr, err := GenerateRequest(req)
	if err != nil {
		g.writeFailure(w, DoorOpenAI, ep, openaiFail, invalidFailure(err), start)
		return
	}
	id := openaiID("cmpl-", c)
	usage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	fr := framing{door: DoorOpenAI, endpoint: ep, stream: req.Stream, contentType: ctOpenAIJSON, fail: openaiFail,
		inStream: ErrorEvent}
	if req.Stream {
		events := func(b []byte) ([]byte, error) {
			var resp api.GenerateResponse
			if err := json.Unmarshal(b, &resp); err != nil {
				return nil, err
			}
			return CompletionEvents(id, usage, resp), nil
		}
		fr.contentType, fr.chunk, fr.final = ctSSE, events, events
	} else {
		fr.final = func(b []byte) ([]byte, error) {
			var resp api.GenerateResponse
			if err := json.Unmarshal(b, &resp); err != nil {
				return nil, err
			}
			out, err := json.Marshal(ToCompletion(id, resp))
			return append(out, '\n'), err
		}
	}
	b, _ := json.Marshal(gr)
	g.call(w, r, c, fr, withOp("generate", b), start)
}

func (g *Gateway) openaiEmbeddings(w http.ResponseWriter, r *http.Request) {
	const ep = "embeddings"
	start := time.Now()
	c, ok := g.caller(w, r, DoorOpenAI, ep, openaiFail, start)
	if !ok {
		return
	}
	var req EmbedRequest
	if !g.decode(w, r, &req, DoorOpenAI, ep, openaiFail, start) {
		return
	}
	er, err := EmbedInput(req)
	if err != nil {
		g.writeFailure(w, DoorOpenAI, ep, openaiFail, invalidFailure(err), start)
		return
	}
	fr := framing{door: DoorOpenAI, endpoint: ep, contentType: ctOpenAIJSON, fail: openaiFail, inStream: ErrorEvent,
		final: func(b []byte) ([]byte, error) {
			var resp api.EmbedResponse
			if err := json.Unmarshal(b, &resp); err != nil {
				return nil, err
			}
			out, err := json.Marshal(ToEmbeddingList(req.Model, req.EncodingFormat == "base64", resp))
			return append(out, '\n'), err
		}}
	b, _ := json.Marshal(er)
	g.call(w, r, c, fr, withOp("embed", b), start)
}

func (g *Gateway) openaiModels(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !g.authorized(w, r, DoorOpenAI, "models", openaiFail, start) {
		return
	}
	w.Header().Set("Content-Type", ctOpenAIJSON)
	b, _ := json.Marshal(ToModelList(g.models()))
	_, _ = w.Write(append(b, '\n'))
	g.m.observe(DoorOpenAI, "models", "", start)
}

func (g *Gateway) openaiModel(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !g.authorized(w, r, DoorOpenAI, "model", openaiFail, start) {
		return
	}
	id := r.PathValue("id")
	name, ok := lookupModel(g.models(), id)
	if !ok {
		g.writeFailure(w, DoorOpenAI, "model", openaiFail, Failure{Status: http.StatusNotFound, Code: wire.CodeModelNotFound,
			Message: fmt.Sprintf("model %q not found", id)}, start)
		return
	}
	w.Header().Set("Content-Type", ctOpenAIJSON)
	b, _ := json.Marshal(Model{ID: name, Object: "model", OwnedBy: OwnedBy(name)})
	_, _ = w.Write(append(b, '\n'))
	g.m.observe(DoorOpenAI, "model", "", start)
}
