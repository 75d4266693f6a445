package ollamatest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
)

// serveHTTP routes a request the way Ollama's gin router does; unknown paths
// and wrong methods get gin's plain-text "404 page not found".
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	endpoint := strings.TrimPrefix(path, "/api/")
	if path == "/" {
		endpoint = "heartbeat"
	}
	s.countCall(endpoint)

	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	switch {
	case path == "/" && get:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "Ollama is running")
	case path == "/api/version" && get:
		writeJSON(w, http.StatusOK, map[string]string{"version": Version})
	case path == "/api/tags" && get:
		s.tags(w)
	case path == "/api/ps" && r.Method == http.MethodGet:
		s.ps(w)
	case path == "/api/generate" && post:
		s.generate(w, r)
	case path == "/api/chat" && post:
		s.chat(w, r)
	case path == "/api/embed" && post:
		s.embed(w, r)
	case path == "/api/embeddings" && post:
		s.embeddings(w, r)
	case path == "/api/show" && post:
		s.show(w, r)
	default:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "404 page not found")
	}
}

func (s *Server) generate(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req api.GenerateRequest
	if !s.decode(w, r, "generate", &req) || !s.admit(w, "generate", req.Model) {
		return
	}
	defer s.enter()()
	if !s.wait(r.Context()) {
		return
	}
	key := modelKey(req.Model)
	s.markLoaded(key, req.KeepAlive)

	if req.Prompt == "" { // Ollama: an empty prompt just loads (or unloads) the model
		reason := "load"
		if req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
			reason = "unload"
		}
		s.reply(w, r, api.GenerateResponse{Model: req.Model, CreatedAt: now(), Done: true, DoneReason: reason})
		return
	}

	text, reason := answer("echo: "+req.Prompt, req.Options)
	chunks := splitWords(text)
	final := func() any {
		return api.GenerateResponse{
			Model: req.Model, CreatedAt: now(), Done: true, DoneReason: reason,
			Metrics: metrics(start, countWords(req.Prompt), len(chunks)),
		}
	}
	if !streaming(req.Stream) {
		resp := final().(api.GenerateResponse)
		resp.Response = text
		s.reply(w, r, resp)
		return
	}
	parts := make([]any, len(chunks))
	for i, c := range chunks {
		parts[i] = api.GenerateResponse{Model: req.Model, CreatedAt: now(), Response: c}
	}
	s.stream(w, r, parts, final)
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req api.ChatRequest
	if !s.decode(w, r, "chat", &req) || !s.admit(w, "chat", req.Model) {
		return
	}
	defer s.enter()()
	if !s.wait(r.Context()) {
		return
	}
	key := modelKey(req.Model)
	s.markLoaded(key, req.KeepAlive)

	if len(req.Messages) == 0 { // Ollama: no messages just loads (or unloads) the model
		reason := "load"
		if req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
			reason = "unload"
		}
		s.reply(w, r, api.ChatResponse{
			Model: req.Model, CreatedAt: now(), Message: api.Message{Role: "assistant"},
			Done: true, DoneReason: reason,
		})
		return
	}

	var last string
	promptWords := 0
	for _, m := range req.Messages {
		promptWords += countWords(m.Content)
		if m.Role == "user" {
			last = m.Content
		}
	}
	if len(req.Tools) > 0 && strings.HasPrefix(last, "call ") {
		s.toolCall(w, r, req, strings.TrimPrefix(last, "call "), start, promptWords)
		return
	}
	text, reason := answer("echo: "+last, req.Options)
	chunks := splitWords(text)
	final := func() any {
		return api.ChatResponse{
			Model: req.Model, CreatedAt: now(), Message: api.Message{Role: "assistant"},
			Done: true, DoneReason: reason,
			Metrics: metrics(start, promptWords, len(chunks)),
		}
	}
	if !streaming(req.Stream) {
		resp := final().(api.ChatResponse)
		resp.Message.Content = text
		s.reply(w, r, resp)
		return
	}
	parts := make([]any, len(chunks))
	for i, c := range chunks {
		parts[i] = api.ChatResponse{
			Model: req.Model, CreatedAt: now(), Message: api.Message{Role: "assistant", Content: c},
		}
	}
	s.stream(w, r, parts, final)
}

// toolCall answers a chat that asks for tool name the way Ollama v0.6.5
// does with tools: non-streaming, one message with tool_calls and no
// content; streaming, a chunk with the tool call and no content, then the
// final chunk with none.
func (s *Server) toolCall(w http.ResponseWriter, r *http.Request, req api.ChatRequest, name string, start time.Time, promptWords int) {
	calls := []api.ToolCall{{Function: api.ToolCallFunction{Name: name, Arguments: api.ToolCallFunctionArguments{"city": "Paris"}}}}
	final := func() any {
		return api.ChatResponse{
			Model: req.Model, CreatedAt: now(), Message: api.Message{Role: "assistant"},
			Done: true, DoneReason: "stop", Metrics: metrics(start, promptWords, 1),
		}
	}
	if !streaming(req.Stream) {
		resp := final().(api.ChatResponse)
		resp.Message.ToolCalls = calls
		s.reply(w, r, resp)
		return
	}
	s.stream(w, r, []any{api.ChatResponse{
		Model: req.Model, CreatedAt: now(), Message: api.Message{Role: "assistant", ToolCalls: calls},
	}}, final)
}

func (s *Server) embed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req api.EmbedRequest
	if !s.decode(w, r, "embed", &req) {
		return
	}
	var inputs []string
	switch in := req.Input.(type) {
	case nil:
	case string:
		if in != "" {
			inputs = []string{in}
		}
	case []any:
		for _, v := range in {
			str, ok := v.(string)
			if !ok {
				writeError(w, http.StatusBadRequest, "invalid input type")
				return
			}
			inputs = append(inputs, str)
		}
	default:
		writeError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	if !s.admit(w, "embed", req.Model) {
		return
	}
	defer s.enter()()
	if !s.wait(r.Context()) {
		return
	}
	s.markLoaded(modelKey(req.Model), req.KeepAlive)

	resp := api.EmbedResponse{Model: req.Model, Embeddings: [][]float32{}}
	words := 0
	for _, in := range inputs {
		resp.Embeddings = append(resp.Embeddings, Embedding(in))
		words += max(1, countWords(in))
	}
	if len(inputs) > 0 {
		m := metrics(start, words, 0)
		resp.TotalDuration, resp.LoadDuration, resp.PromptEvalCount = m.TotalDuration, m.LoadDuration, words
	}
	s.reply(w, r, resp)
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req api.EmbeddingRequest
	if !s.decode(w, r, "embeddings", &req) || !s.admit(w, "embeddings", req.Model) {
		return
	}
	defer s.enter()()
	if !s.wait(r.Context()) {
		return
	}
	s.markLoaded(modelKey(req.Model), req.KeepAlive)

	resp := api.EmbeddingResponse{Embedding: []float64{}}
	if req.Prompt != "" {
		for _, v := range Embedding(req.Prompt) {
			resp.Embedding = append(resp.Embedding, float64(v))
		}
	}
	s.reply(w, r, resp)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	var req api.ShowRequest
	if !s.decode(w, r, "show", &req) {
		return
	}
	if req.Model == "" {
		req.Model = req.Name //nolint:staticcheck // older clients still send "name"
	}
	if !s.admit(w, "show", req.Model) {
		return
	}
	s.mu.Lock()
	display, ok := s.models[modelKey(req.Model)]
	s.mu.Unlock()
	if !ok { // removed by SetModels since admit
		display = displayName(req.Model)
	}
	s.reply(w, r, showResponse(display))
}

func (s *Server) tags(w http.ResponseWriter) {
	s.mu.Lock()
	models := make([]api.ListModelResponse, 0, len(s.modelOrder))
	for _, k := range s.modelOrder {
		models = append(models, listEntry(s.models[k]))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, api.ListResponse{Models: models})
}

func (s *Server) ps(w http.ResponseWriter) {
	nowT := time.Now()
	s.mu.Lock()
	models := []api.ProcessModelResponse{}
	for k, exp := range s.loaded {
		if !exp.After(nowT) {
			delete(s.loaded, k)
			continue
		}
		display, ok := s.models[k]
		if !ok {
			display = k
		}
		e := listEntry(display)
		models = append(models, api.ProcessModelResponse{
			Name: e.Name, Model: e.Model, Size: e.Size, SizeVRAM: e.Size,
			Digest: e.Digest, Details: e.Details, ExpiresAt: exp,
		})
	}
	s.mu.Unlock()
	// Like Ollama: longest remaining keep-alive first (ties broken by name).
	slices.SortFunc(models, func(a, b api.ProcessModelResponse) int {
		if c := b.ExpiresAt.Compare(a.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	writeJSON(w, http.StatusOK, api.ProcessResponse{Models: models})
}

// decode reads and records the request body and unmarshals it into v,
// answering 400 like Ollama if the body is empty or not valid JSON. It
// reports whether the handler should continue.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, endpoint string, v any) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	s.record(endpoint, body)
	if len(strings.TrimSpace(string(body))) == 0 {
		writeError(w, http.StatusBadRequest, "missing request body")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// admit counts a well-formed call for model and answers it with an error if
// the model is missing, a failure is injected, or the model is unknown. It
// reports whether the handler should continue.
func (s *Server) admit(w http.ResponseWriter, endpoint, model string) bool {
	if model == "" {
		writeError(w, http.StatusBadRequest, "model is required")
		return false
	}
	key := modelKey(model)
	s.mu.Lock()
	s.callsFor[callKey{endpoint, key}]++
	var f failure
	if s.failNextN > 0 {
		s.failNextN--
		f = failure{status: s.failNextStatus, msg: defaultFailureMessage(s.failNextStatus)}
	} else if mf, ok := s.failures[key]; ok {
		f = mf
	}
	_, known := s.models[key]
	s.mu.Unlock()

	switch {
	case f.status != 0:
		writeError(w, f.status, f.msg)
		return false
	case !known:
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found, try pulling it first", model))
		return false
	}
	return true
}

// wait parks the call while the server is blocked and then sleeps for the
// configured latency. It returns false if the client went away meanwhile
// (counted as canceled); if the server is closed it aborts the connection.
func (s *Server) wait(ctx context.Context) bool {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			s.noteCanceled()
			return false
		case <-s.done:
			panic(http.ErrAbortHandler)
		}
	}

	s.mu.Lock()
	d := s.latency
	s.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			s.noteCanceled()
			return false
		case <-s.done:
			panic(http.ErrAbortHandler)
		}
	}
	if ctx.Err() != nil {
		s.noteCanceled()
		return false
	}
	return true
}

// reply writes a single 200 JSON answer unless the client already left.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any) {
	if r.Context().Err() != nil {
		s.noteCanceled()
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// stream writes parts and then final() as NDJSON, flushing after each line,
// like Ollama's streamResponse. A client that leaves mid-stream is counted
// as canceled.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, parts []any, final func() any) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	write := func(v any) bool {
		if ctx.Err() != nil {
			return false
		}
		b, err := json.Marshal(v)
		if err != nil {
			panic("ollamatest: marshal: " + err.Error())
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for _, p := range parts {
		if !write(p) {
			s.noteCanceled()
			return
		}
	}
	if !write(final()) {
		s.noteCanceled()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("ollamatest: marshal: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// writeError answers status with Ollama's error body {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// defaultFailureMessage is the error text of an injected failure without an
// explicit message.
func defaultFailureMessage(status int) string {
	if status == http.StatusServiceUnavailable {
		// Ollama's ErrMaxQueue text.
		return "server busy, please try again.  maximum pending requests exceeded"
	}
	return fmt.Sprintf("ollamatest: injected failure: %d %s", status, http.StatusText(status))
}

// streaming reports whether a request wants NDJSON: Ollama streams unless
// "stream" is explicitly false.
func streaming(stream *bool) bool { return stream == nil || *stream }

func now() time.Time { return time.Now().UTC() }
