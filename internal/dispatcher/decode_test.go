package dispatcher_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/wire"
)

// TestAskDecodedOnce: an ask's body is decoded once on its way from the
// ask door to the worker's answer (the door's admission, reused by the
// dispatcher that takes it), whether or not the door could answer it from
// the cache; with Herd-Cache: off the door does not admit it and the
// dispatcher does, once.
func TestAskDecodedOnce(t *testing.T) {
	s := startAuto(t)
	ask := func(id, cache string, temperature string) {
		t.Helper()
		m := nats.NewMsg(wire.AskSubject(wire.Normal, "formatter"))
		m.Header.Set(wire.HdrMsgID, id)
		if cache != "" {
			m.Header.Set(wire.HdrCache, cache)
		}
		m.Data = fmt.Appendf(nil, `{"model":"tiny","prompt":"decode me once %s","stream":false,"options":{"temperature":%s}}`, id, temperature)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		r, err := s.nc.RequestMsgWithContext(ctx, m)
		if err != nil || r.Header.Get(wire.HdrStatus) != "200" {
			t.Fatalf("%s: %v %v", id, err, r)
		}
	}
	for _, c := range []struct{ id, cache, temp string }{
		{"once-miss", "", "0"},           // reproducible: the door looks in the cache, misses
		{"once-sampled", "", "0.8"},      // not reproducible: no cache lookup
		{"once-off", wire.CacheOff, "0"}, // the door does not admit it
	} {
		before := s.d.Decodes()
		ask(c.id, c.cache, c.temp)
		if n := s.d.Decodes() - before; n != 1 {
			t.Errorf("%s: the body was decoded %d times on its way, want once", c.id, n)
		}
	}
}
