package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// Intercept makes every call to Ollama go to f first: when f returns true
// it has answered the call itself (its writer records the status and
// bytes in c) and the call goes no further. nil removes the interceptor.
func (p *Proxy) Intercept(f func(w http.ResponseWriter, r *http.Request, c *Call) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.intercept = f
}

// intercepted runs the interceptor, if any, on a call; w is the proxy's
// writer, which records into c.
func (p *Proxy) intercepted(w http.ResponseWriter, r *http.Request, c *Call) bool {
	p.mu.Lock()
	f := p.intercept
	p.mu.Unlock()
	if f == nil {
		return false
	}
	return f(w, r, c)
}

// failBody answers every inference call whose body contains s with status
// and Ollama's error body {"error": msg}, every time: a prompt Ollama
// fails on.
func failBody(s string, status int, msg string) func(http.ResponseWriter, *http.Request, *Call) bool {
	return func(w http.ResponseWriter, _ *http.Request, c *Call) bool {
		if !inference(c.Path) || !c.Has(s) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"error":%q}`, msg)
		return true
	}
}

// waitCall waits until a call to /api/generate whose body contains s has
// been open for at least age (and, when bytes > 0, streamed that many
// bytes), and returns it.
func waitCall(t *testing.T, h *Harness, s string, age time.Duration, bytes int64) Call {
	t.Helper()
	var found Call
	natstest.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		for _, c := range h.Proxy.Calls("/api/generate", s) {
			if !c.Done && time.Since(c.Start) >= age && c.Bytes >= bytes {
				found = c
				return nil
			}
		}
		return fmt.Errorf("no call for %q running for %v yet", s, age)
	})
	return found
}

// waitEnded waits (at most total) until the call that started at start
// for s has ended, and returns it; ok is false when it is still open.
func waitEnded(h *Harness, s string, start time.Time, total time.Duration) (Call, bool) {
	deadline := time.Now().Add(total)
	for {
		for _, c := range h.Proxy.Calls("/api/generate", s) {
			if c.Start.Equal(start) && c.Done {
				return c, true
			}
		}
		if time.Now().After(deadline) {
			return Call{}, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// batchSeq returns the HERD_BATCH sequence of the batch whose data
// contains s (it must still be in the stream: not yet acknowledged).
func batchSeq(t *testing.T, js jetstream.JetStream, s string) uint64 {
	t.Helper()
	var seq uint64
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, wire.StreamBatch)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		for n := info.State.LastSeq; n >= info.State.FirstSeq && n > 0; n-- {
			m, err := st.GetMsg(ctx, n)
			if err == nil && bytes.Contains(m.Data, []byte(s)) {
				seq = n
				return nil
			}
		}
		return fmt.Errorf("no batch with %q in %s", s, wire.StreamBatch)
	})
	return seq
}
