package e2e

import (
	"testing"

	"github.com/sutazai/herd/internal/wire"
)

// TestHitAnsweredAtDoor: an ask whose answer is in the cache is answered
// by the ask door with no durable write (nothing stored in HERD_REQ), with
// the same answer, Herd-Cache: hit and its own request id; a miss, and a
// request that may not be answered from the cache (Herd-Cache: refresh), is
// stored as before.
func TestHitAnsweredAtDoor(t *testing.T) {
	s := newStack(t, stackOpts{})
	nc, js := s.srv.Connect(t)
	body := genBody("tiny", "cache me at the door", `,"options":{"temperature":0}`)
	lastSeq := func() uint64 {
		t.Helper()
		st, err := js.Stream(t.Context(), wire.StreamReq)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	first := ask(t, nc, "alice", "", body)
	if status(first) != 200 || first.Header.Get(wire.HdrCache) != wire.CacheMiss {
		t.Fatalf("first ask: %d %q", status(first), first.Header.Get(wire.HdrCache))
	}
	before := lastSeq()
	hit := ask(t, nc, "bob", "bob=door-2", body)
	if status(hit) != 200 || hit.Header.Get(wire.HdrCache) != wire.CacheHit || string(hit.Data) != string(first.Data) ||
		hit.Header.Get(wire.HdrRequestID) != "bob=door-2" {
		t.Fatalf("repeat: %d cache %q id %q body %s, want the cached answer under its own id", status(hit),
			hit.Header.Get(wire.HdrCache), hit.Header.Get(wire.HdrRequestID), hit.Data)
	}
	if after := lastSeq(); after != before {
		t.Fatalf("a cache hit was written to HERD_REQ (last seq %d -> %d)", before, after)
	}
	m := ask(t, nc, "bob", "", body, wire.HdrCache, wire.CacheRefresh)
	if status(m) != 200 || m.Header.Get(wire.HdrCache) != wire.CacheMiss || lastSeq() != before+1 {
		t.Fatalf("Herd-Cache: refresh: %d %q, stored %d", status(m), m.Header.Get(wire.HdrCache), lastSeq()-before)
	}
	if n := s.fake.Calls("generate"); n != 2 {
		t.Fatalf("Ollama calls %d, want 2 (the miss and the refresh)", n)
	}
}
