package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamaproxy"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// The generated models the managed Ollama imports (internal/testmodel).
const (
	tinyModel = "herd-tiny"
	slowModel = "herd-slow"
)

// realNumCtx is the num_ctx the workers give both generated models; it is
// also the models' own (Modelfile) window, so no call reloads a model.
const realNumCtx = 2048

// realOptions are the options the worker adds to every call (num_thread
// from a CPU budget of 1, num_ctx from worker.Config.NumCtx), merged with
// extra. A direct call with them runs exactly what herd ran.
func realOptions(extra map[string]any) map[string]any {
	o := map[string]any{"num_thread": 1, "num_ctx": realNumCtx}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

// startRealOllama starts a managed `ollama serve` for one test, with its own
// state directory, importing cfg.TestModels; it is stopped when the test
// ends. Without the pinned binary ($HERD_OLLAMA_BIN, else bin/ollama at the
// module root) the test is skipped, or fails when HERD_REQUIRE_OLLAMA is set.
func startRealOllama(t *testing.T, cfg managed.Config) *managed.Instance {
	t.Helper()
	cfg.Dir = t.TempDir()
	return harness.Ollama(t, cfg)
}

// directClient returns an Ollama client that bypasses herd and the proxy.
func directClient(t *testing.T, base string) *api.Client {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, http.DefaultClient)
}

// directGenerate runs one non-streaming generation straight on Ollama.
func directGenerate(ctx context.Context, c *api.Client, model, prompt string, opts map[string]any) (api.GenerateResponse, error) {
	stream := false
	var out api.GenerateResponse
	err := c.Generate(ctx, &api.GenerateRequest{Model: model, Prompt: prompt, Stream: &stream, Options: opts},
		func(r api.GenerateResponse) error { out = r; return nil })
	return out, err
}

// realStackOpts returns stack options for workers on ollamaURL with a CPU
// budget of 1 and one num_ctx per model; more adjusts the worker config.
func realStackOpts(ollamaURL string, more func(*worker.Config)) stackOpts {
	return stackOpts{
		ollamaURL: ollamaURL,
		wcfg: func(c *worker.Config) {
			c.CPUBudget = 1
			c.NumCtx = map[string]int{tinyModel: realNumCtx, slowModel: realNumCtx}
			if more != nil {
				more(c)
			}
		},
	}
}

// upstreamCall is one HTTP call the worker made to Ollama, as the proxy saw it.
type upstreamCall = ollamaproxy.Call

// ollamaProxy is a recording reverse proxy between the workers (on its
// URL) and a real Ollama. When Ollama fails before answering, the proxy
// drops the worker's connection, as Ollama itself dying would.
type ollamaProxy struct{ *ollamaproxy.Proxy }

func newOllamaProxy(t *testing.T, target string) *ollamaProxy {
	t.Helper()
	return &ollamaProxy{ollamaproxy.New(t, target)}
}

// snapshot returns copies of the calls to path whose body contains every
// one of has.
func (p *ollamaProxy) snapshot(path string, has ...string) []upstreamCall {
	return p.Calls(path, has...)
}

// Outcomes of an upstream call, as counted by outcomes; the others are
// ollamaproxy's (dropped, closed, unfinished) and any other status.
const (
	callOK   = "200" // a complete answer
	callBusy = "503" // Ollama's "server busy"
)

// outcomes counts the calls to path by how they ended.
func (p *ollamaProxy) outcomes(path string) map[string]int { return p.Outcomes(path) }

// waitIdle polls until herd holds nothing for model any more: no request
// waiting in HERD_REQ and no batch pending or unacknowledged in HERD_BATCH.
// After it, no further reply for those requests can come.
func waitIdle(t *testing.T, s *stack, model string) {
	t.Helper()
	_, js := s.srv.Connect(t)
	natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, p := range wire.Priorities {
			for _, ref := range [][2]string{
				{wire.StreamReq, wire.ReqConsumerName(p)},
				{wire.StreamBatch, wire.ConsumerName(model, p)},
			} {
				cons, err := js.Consumer(t.Context(), ref[0], ref[1])
				if err != nil {
					continue // a batch consumer not created (no worker serves it)
				}
				info, err := cons.Info(t.Context())
				if err != nil {
					return err
				}
				if info.NumPending > 0 || info.NumAckPending > 0 {
					return fmt.Errorf("%s/%s: %d pending, %d unacknowledged", ref[0], ref[1], info.NumPending, info.NumAckPending)
				}
			}
		}
		return nil
	})
}

// rawStream publishes a request at the wire level on its own inbox and
// returns every message of its answer in arrival order: the streamed
// chunks, then the final reply.
func rawStream(t *testing.T, s *stack, id string, body []byte, hdr ...string) []*nats.Msg {
	t.Helper()
	nc, js := s.srv.Connect(t)
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	m := nats.NewMsg(wire.ReqSubject(wire.Normal, "raw"))
	m.Data = body
	m.Header.Set(wire.HdrMsgID, id)
	m.Header.Set(wire.HdrReplyTo, inbox)
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var msgs []*nats.Msg
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("stream %s after %d messages: %v", id, len(msgs), err)
		}
		msgs = append(msgs, m)
		if m.Header.Get(wire.HdrStatus) != "" {
			return msgs
		}
	}
}

// maxDiff returns the largest absolute difference between a and b, or +Inf
// when their lengths differ.
func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// ms rounds d for logs.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// oneLine shortens s for failure messages.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", `\n`)
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}
