package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// hostileMaxBody is the dispatcher's body limit in TestHostileInput: small
// enough to exceed cheaply, large enough for 10k levels of nesting.
const hostileMaxBody = 64 << 10

// TestHostileInput: every malformed or hostile request published at the
// wire level gets exactly one error reply naming the problem, is counted in
// herd_dispatcher_rejected_total, never reaches Ollama, and good requests
// keep flowing afterwards.
func TestHostileInput(t *testing.T) {
	s := newStack(t, stackOpts{dcfg: func(c *dispatcherConfig) { c.MaxBodyBytes = hostileMaxBody }})
	l := s.ledger()
	good := `{"model":"tiny","prompt":"x"}`
	deep := strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)
	cases := []struct {
		id    string
		agent string // default "hostile"
		body  string
		hdr   []string
		code  wire.Code
		msg   string
	}{
		// Not JSON, or not one JSON object.
		{id: "truncated", body: `{"model":"tiny","prompt":"x"`, code: wire.CodeInvalidRequest, msg: "unexpected end of JSON"},
		{id: "broken", body: `{model: tiny, prompt: x}`, code: wire.CodeInvalidRequest, msg: "invalid character"},
		{id: "array", body: `[` + good + `]`, code: wire.CodeInvalidRequest, msg: "not a JSON object"},
		{id: "string", body: `"tiny x"`, code: wire.CodeInvalidRequest, msg: "not a JSON object"},
		{id: "number", body: `42`, code: wire.CodeInvalidRequest, msg: "not a JSON object"},
		{id: "empty-body", body: ``, code: wire.CodeInvalidRequest, msg: "body is empty"},
		{id: "two-values", body: good + ` {}`, code: wire.CodeInvalidRequest, msg: "after top-level value"},
		{id: "huge-body", body: `{"model":"tiny","prompt":"` + strings.Repeat("x", hostileMaxBody) + `"}`, code: wire.CodeInvalidRequest, msg: "limit"},
		{id: "deep-top", body: deep, code: wire.CodeInvalidRequest, msg: "not a JSON object"},
		{id: "deep-option", body: `{"model":"tiny","prompt":"x","options":{"stop":` + deep + `}}`, code: wire.CodeInvalidRequest, msg: "depth"},
		{id: "invalid-utf8", body: "{\"model\":\"tiny\",\"prompt\":\"\xff\xfe\"}", code: wire.CodeInvalidRequest, msg: "UTF-8"},
		// Wrong types and unknown fields.
		{id: "prompt-number", body: `{"model":"tiny","prompt":5}`, code: wire.CodeInvalidRequest, msg: `prompt" must be string`},
		{id: "messages-object", body: `{"model":"tiny","messages":{"role":"user","content":"x"}}`, code: wire.CodeInvalidRequest, msg: "messages"},
		{id: "options-string", body: `{"model":"tiny","prompt":"x","options":"fast"}`, code: wire.CodeInvalidRequest, msg: "options"},
		{id: "stream-string", body: `{"model":"tiny","prompt":"x","stream":"yes"}`, code: wire.CodeInvalidRequest, msg: "stream"},
		{id: "images-not-base64", body: `{"model":"tiny","prompt":"x","images":["!!"]}`, code: wire.CodeInvalidRequest, msg: "base64"},
		{id: "unknown-field", body: `{"model":"tiny","prompt":"x","temprature":0}`, code: wire.CodeInvalidRequest, msg: `unknown field "temprature"`},
		// Option values.
		{id: "num-ctx-negative", body: `{"model":"tiny","prompt":"x","options":{"num_ctx":-1}}`, code: wire.CodeInvalidRequest, msg: "num_ctx"},
		{id: "num-ctx-huge", body: `{"model":"tiny","prompt":"x","options":{"num_ctx":1e12}}`, code: wire.CodeInvalidRequest, msg: "num_ctx"},
		{id: "num-ctx-overflow", body: `{"model":"tiny","prompt":"x","options":{"num_ctx":1e400}}`, code: wire.CodeInvalidRequest, msg: "1e400"},
		{id: "num-predict-string", body: `{"model":"tiny","prompt":"x","options":{"num_predict":"x"}}`, code: wire.CodeInvalidRequest, msg: "num_predict"},
		{id: "temperature-negative", body: `{"model":"tiny","prompt":"x","options":{"temperature":-1}}`, code: wire.CodeInvalidRequest, msg: "temperature"},
		// Models.
		{id: "empty-model", body: `{"model":"","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "model is required"},
		{id: "null-model", body: `{"model":null,"prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "model is required"},
		{id: "model-dotdot", body: `{"model":"../../etc/passwd","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "not a valid model name"},
		{id: "model-escaped-dotdot", body: `{"model":"\u002e\u002e/x","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "not a valid model name"},
		{id: "model-abs", body: `{"model":"/abs","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "not a valid model name"},
		{id: "model-backslash", body: `{"model":"a\\b","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "not a valid model name"},
		{id: "model-space", body: `{"model":"tiny model","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "not a valid model name"},
		{id: "model-long", body: `{"model":"` + strings.Repeat("m", 201) + `","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: "longer than 200"},
		{id: "model-unknown", body: `{"model":"nope","prompt":"x"}`, code: wire.CodeModelNotFound, msg: `"nope"`},
		// Operations.
		{id: "unknown-op", body: `{"op":"fly","model":"tiny","prompt":"x"}`, code: wire.CodeInvalidRequest, msg: `op "fly"`},
		{id: "empty-prompt", body: `{"model":"tiny","prompt":" "}`, code: wire.CodeInvalidRequest, msg: "prompt is empty"},
		{id: "empty-messages", body: `{"model":"tiny","messages":[]}`, code: wire.CodeInvalidRequest, msg: "messages is empty"},
		{id: "bad-role", body: `{"model":"tiny","messages":[{"role":"root","content":"x"}]}`, code: wire.CodeInvalidRequest, msg: `role "root"`},
		{id: "embed-empty-list", body: `{"model":"tiny","input":[]}`, code: wire.CodeInvalidRequest, msg: "input is empty"},
		{id: "embed-empty-string", body: `{"op":"embed","model":"tiny","input":""}`, code: wire.CodeInvalidRequest, msg: "input[0] is empty"},
		{id: "embed-not-strings", body: `{"model":"tiny","input":["a",1]}`, code: wire.CodeInvalidRequest, msg: "input[1]"},
		// Headers.
		{id: "timeout-soon", body: good, hdr: []string{wire.HdrTimeout, "soon"}, code: wire.CodeInvalidRequest, msg: `Herd-Timeout "soon"`},
		{id: "timeout-negative", body: good, hdr: []string{wire.HdrTimeout, "-5s"}, code: wire.CodeInvalidRequest, msg: `Herd-Timeout "-5s"`},
		{id: "deadline-bad", body: good, hdr: []string{wire.HdrDeadline, "tomorrow"}, code: wire.CodeInvalidRequest, msg: `Herd-Deadline "tomorrow"`},
		{id: "deadline-past", body: good, hdr: []string{wire.HdrDeadline, time.Now().Add(-time.Hour).Format(time.RFC3339)}, code: wire.CodeDeadlineExceeded, msg: "deadline passed"},
		{id: "cache-bad", body: good, hdr: []string{wire.HdrCache, "always"}, code: wire.CodeInvalidRequest, msg: `Herd-Cache "always"`},
		{id: "cache-ttl-zero", body: good, hdr: []string{wire.HdrCacheTTL, "0s"}, code: wire.CodeInvalidRequest, msg: `Herd-Cache-TTL "0s"`},
		{id: "cache-ttl-huge", body: good, hdr: []string{wire.HdrCacheTTL, "1000h"}, code: wire.CodeInvalidRequest, msg: `Herd-Cache-TTL "1000h"`},
		{id: "msgid-space", body: good, hdr: []string{wire.HdrMsgID, "has space"}, code: wire.CodeInvalidRequest, msg: `Nats-Msg-Id "has space"`},
		{id: "msgid-dots", body: good, hdr: []string{wire.HdrMsgID, "a.b.c"}, code: wire.CodeInvalidRequest, msg: `Nats-Msg-Id "a.b.c"`},
		// Subjects.
		{id: "extra-token", agent: "a.b", body: good, code: wire.CodeInvalidRequest, msg: "is not herd.req"},
	}
	codes := map[wire.Code]float64{}
	for _, c := range cases {
		codes[c.code]++
	}
	before := map[wire.Code]float64{}
	for code := range codes {
		before[code] = testutil.ToFloat64(mustCounter(t, s, string(code)))
	}
	calls := func() int { return s.fake.Calls("generate") + s.fake.Calls("chat") + s.fake.Calls("embed") }
	callsBefore := calls()

	var ids []string
	for _, c := range cases {
		agent := c.agent
		if agent == "" {
			agent = "hostile"
		}
		// The reply subject is named by the case, so a case that sets a
		// bad Nats-Msg-Id is still found in the ledger.
		hdr := append([]string{wire.HdrReplyTo, l.prefix + "." + c.id}, c.hdr...)
		l.send(wire.Normal, agent, c.id, []byte(c.body), hdr...)
		ids = append(ids, c.id)
	}
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		var missing []string
		for _, id := range ids {
			if l.final(id) == nil {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no reply yet for %q", missing)
		}
		return nil
	})

	for _, c := range cases {
		m := l.final(c.id)
		eb := errorBody(t, m)
		if eb.Code != c.code || status(m) != c.code.Status() || eb.Retryable || !strings.Contains(eb.Error, c.msg) {
			t.Errorf("%s: status %d body %.300s; want %d %s mentioning %q", c.id, status(m), m.Data, c.code.Status(), c.code, c.msg)
		}
	}
	for code, n := range codes {
		if got := testutil.ToFloat64(mustCounter(t, s, string(code))) - before[code]; got != n {
			t.Errorf("herd_dispatcher_rejected_total{code=%q} grew by %v, want %v", code, got, n)
		}
	}

	// Good requests still succeed, through the same door and agent.
	goods := map[string]string{
		"good-generate": `{"model":"tiny","prompt":"still fine"}`,
		"good-chat":     `{"model":"tiny","messages":[{"role":"user","content":"still fine"}]}`,
		"good-embed":    `{"model":"tiny","input":["still","fine"]}`,
	}
	var goodIDs []string
	for id, body := range goods {
		l.send(wire.Normal, "hostile", id, []byte(body))
		goodIDs = append(goodIDs, id)
	}
	l.wait(goodIDs, 15*time.Second)
	for _, id := range goodIDs {
		if m := l.final(id); status(m) != 200 {
			t.Errorf("%s after the hostile table: status %d body %s", id, status(m), m.Data)
		}
	}
	// No bad request reached Ollama: only the three good ones did.
	if got := calls() - callsBefore; got != len(goods) {
		t.Errorf("Ollama saw %d generate/chat/embed calls, want %d (the good requests only)", got, len(goods))
	}
	// Exactly one reply each: none lost, none duplicated, even after the
	// good requests had time to flush anything late.
	if lost, dup := l.counts(append(ids, goodIDs...)); lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicated %d", lost, dup)
	}
}

// TestHostileNoReplyTo: a request published without Herd-Reply-To has no
// one to answer, so it is dead-lettered in HERD_DLQ with a reason, counted
// as rejected, and never run.
func TestHostileNoReplyTo(t *testing.T) {
	s := newStack(t, stackOpts{})
	_, js := s.srv.Connect(t)
	before := testutil.ToFloat64(mustCounter(t, s, string(wire.CodeInvalidRequest)))
	cases := []struct {
		id, body string
		reason   []string
	}{
		{"noreply-good", `{"model":"tiny","prompt":"x"}`, []string{wire.HdrReplyTo}},
		{"noreply-broken", `{"model":"tiny","prompt":`, []string{wire.HdrReplyTo, "not a JSON object"}},
	}
	for _, c := range cases {
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, "hostile"))
		m.Data = []byte(c.body)
		m.Header.Set(wire.HdrMsgID, c.id)
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]jetstream.Msg{}
	cons, err := js.OrderedConsumer(t.Context(), wire.StreamDLQ, orderedAll())
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if len(got) == len(cases) {
			return nil
		}
		dl, err := cons.Next(jetstream.FetchMaxWait(100 * time.Millisecond))
		if err != nil {
			return err
		}
		got[dl.Headers().Get(wire.HdrRequestID)] = dl
		return fmt.Errorf("%d of %d dead letters", len(got), len(cases))
	})
	for _, c := range cases {
		dl := got[c.id]
		if dl == nil {
			t.Fatalf("%s: no dead letter", c.id)
		}
		if want := wire.DLQSubject(wire.Normal, "hostile"); dl.Subject() != want {
			t.Errorf("%s: dead letter on %q, want %q", c.id, dl.Subject(), want)
		}
		if string(dl.Data()) != c.body {
			t.Errorf("%s: dead letter body %q, want the request %q", c.id, dl.Data(), c.body)
		}
		reason := dl.Headers().Get(wire.HdrReason)
		for _, r := range c.reason {
			if !strings.Contains(reason, r) {
				t.Errorf("%s: reason %q does not mention %q", c.id, reason, r)
			}
		}
	}
	if got := testutil.ToFloat64(mustCounter(t, s, string(wire.CodeInvalidRequest))) - before; got != float64(len(cases)) {
		t.Errorf("herd_dispatcher_rejected_total{code=invalid_request} grew by %v, want %d", got, len(cases))
	}
	if n := s.fake.Calls("generate"); n != 0 {
		t.Errorf("Ollama ran %d generate calls for requests with no reply subject", n)
	}
}

// TestHostileUnknownPriority: a request on herd.req.<unknown priority> is
// stored by HERD_REQ (subjects herd.req.>) and acknowledged to the agent,
// but no consumer reads it (req_high/normal/low filter herd.req.<p>.>), so
// it never gets an outcome and stays in the work queue.
func TestHostileUnknownPriority(t *testing.T) {
	// HERD_REQ only takes the three priorities, so a publish to any other
	// is refused at once instead of being stored where no consumer reads.
	s := newStack(t, stackOpts{})
	_, js := s.srv.Connect(t)
	m := nats.NewMsg("herd.req.urgent.hostile")
	m.Data = genBody("tiny", "x", "")
	m.Header.Set(wire.HdrReplyTo, "_INBOX.never")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err == nil {
		t.Fatal("a request with priority urgent was stored; no consumer would ever answer it")
	}
	// The ask door answers the same mistake with a clear error.
	nc, _ := s.srv.Connect(t)
	reply, err := nc.Request("herd.ask.urgent.hostile", genBody("tiny", "x", ""), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if eb := errorBody(t, reply); eb.Code != wire.CodeInvalidRequest || !strings.Contains(eb.Error, `priority "urgent"`) {
		t.Fatalf("ask door answered %s; want invalid_request naming the priority", reply.Data)
	}
}
