package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestCacheKeyIsWhatRan: the cache key covers the window the request
// actually ran in (the worker's, not the one the agent asked for): when
// the optimizer changes a model's window, answers computed in the old one
// are not served; and an answer whose prompt filled the window (Ollama
// kept only its end) is not cached unless the request asked
// (Herd-Cache-TTL).
func TestCacheKeyIsWhatRan(t *testing.T) {
	s := newStack(t, stackOpts{wcfg: func(c *worker.Config) {
		c.NumCtx = map[string]int{"tiny": 256}
		c.Heartbeat = 100 * time.Millisecond
	}})
	nc, js := s.srv.Connect(t)
	short := genBody("tiny", "a short question", `,"options":{"temperature":0}`)
	long := genBody("tiny", strings.Repeat("word ", 300), `,"options":{"temperature":0}`)
	cache := func(body []byte, hdr ...string) string {
		t.Helper()
		r := ask(t, nc, "alice", "", body, hdr...)
		if status(r) != 200 {
			t.Fatalf("%d %s", status(r), r.Data)
		}
		return r.Header.Get(wire.HdrCache)
	}
	if a, b := cache(short), cache(short); a != "miss" || b != "hit" {
		t.Fatalf("short prompt twice: %s then %s, want miss then hit", a, b)
	}
	if a, b := cache(long), cache(long); a != "miss" || b != "miss" {
		t.Fatalf("a prompt that filled the window, twice: %s then %s; a truncated answer must not be cached", a, b)
	}
	if a, b := cache(long, wire.HdrCacheTTL, "1m"), cache(long, wire.HdrCacheTTL, "1m"); a != "miss" || b != "hit" {
		t.Fatalf("truncated but asked to cache: %s then %s, want miss then hit", a, b)
	}

	// The optimizer gives tiny another window: the short answer computed in
	// 256 tokens is not the answer in 512.
	ctl, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(control.NumCtx{Model: "tiny", NumCtx: 512, At: time.Now(), Reason: "test"})
	if _, err := ctl.Put(t.Context(), control.NumCtxKey("tiny"), b); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if got := cache(short); got != "miss" {
			return fmt.Errorf("the answer from the old window still served: %s", got)
		}
		return nil
	})
	if got := cache(short); got != "hit" {
		t.Fatalf("in the new window the answer is cached again: got %s", got)
	}
}
