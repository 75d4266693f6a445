package ollamaproxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/testbin"
)

func post(t *testing.T, base, body string) (int, error) {
	t.Helper()
	resp, err := http.Post(base+"/api/generate", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return resp.StatusCode, err
}

// TestRecordsOutcomes: the proxy records each call with the worker's URL,
// the status and bytes the worker got, a Hook's own answer and injected
// fault, and drops the worker's connection when Ollama is gone.
func TestRecordsOutcomes(t *testing.T) {
	fake := ollamatest.New(t, ollamatest.WithModels("tiny"))
	var p *Proxy
	p = New(t, fake.URL, WithHook(func(w http.ResponseWriter, _ *http.Request, c *Call) bool {
		if !c.Has("busy") {
			return false
		}
		p.MarkInjected(c, "503")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"server busy"}`))
		return true
	}))
	if code, err := post(t, p.URLFor("w1"), `{"model":"tiny","prompt":"hello","stream":false}`); err != nil || code != http.StatusOK {
		t.Fatalf("through the proxy: %d %v", code, err)
	}
	if code, err := post(t, p.URL, `{"model":"tiny","prompt":"busy","stream":false}`); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("hooked call: %d %v", code, err)
	}
	// The handler records the end just after the worker got the answer.
	natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := p.InFlight(""); n != 0 {
			return fmt.Errorf("%d calls not ended", n)
		}
		return nil
	})
	calls := p.Calls("/api/generate")
	if len(calls) != 2 {
		t.Fatalf("%d calls recorded, want 2", len(calls))
	}
	if c := calls[0]; c.Worker != "w1" || c.Status != http.StatusOK || c.Bytes == 0 || !c.Done || c.Injected != "" {
		t.Fatalf("first call %+v", c)
	}
	if c := calls[1]; c.Worker != "" || c.Status != http.StatusServiceUnavailable || c.Injected != "503" || !c.Done {
		t.Fatalf("hooked call %+v", c)
	}
	if got := p.Calls("/api/generate", "hello"); len(got) != 1 {
		t.Fatalf("calls with hello: %d", len(got))
	}

	down := New(t, fmt.Sprintf("http://127.0.0.1:%d", testbin.FreePort(t)))
	if _, err := post(t, down.URL, `{"model":"tiny","prompt":"x"}`); err == nil {
		t.Fatal("a call to a gone Ollama did not fail")
	}
	c := down.Calls("")[0]
	if !c.Dropped || c.UpstreamErr == nil || c.WorkerGone {
		t.Fatalf("call to a gone Ollama %+v", c)
	}
	want := map[string]int{"200": 1, "503": 1}
	if got := p.Outcomes("/api/generate"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
	if got := down.Outcomes(""); got[Dropped] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}
