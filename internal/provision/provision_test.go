package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

func TestEnsureIdempotent(t *testing.T) {
	s := natstest.Start(t)
	o := provision.Overrides{MaxRequests: 10, ResultsTTL: time.Minute, AckWait: 5 * time.Second, MaxDeliver: 3}
	d := s.Provision(t, o)
	_, js := s.Connect(t)
	// A second run (another service starting) changes nothing and fails nothing.
	if err := d.Ensure(t.Context(), js); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	st, err := js.Stream(t.Context(), wire.StreamReq)
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.MaxMsgs != 10 {
		t.Fatalf("HERD_REQ max_msgs = %d, want the override 10", st.CachedInfo().Config.MaxMsgs)
	}
	for _, p := range wire.Priorities {
		c, err := st.Consumer(context.Background(), wire.ReqConsumerName(p))
		if err != nil {
			t.Fatalf("consumer %s: %v", p, err)
		}
		if c.CachedInfo().Config.MaxDeliver != 3 || c.CachedInfo().Config.AckWait != 5*time.Second {
			t.Fatalf("consumer %s overrides not applied: %+v", p, c.CachedInfo().Config)
		}
	}
	for _, b := range []string{wire.BucketCache, wire.BucketResults, wire.BucketControl, wire.BucketInflight} {
		if _, err := js.KeyValue(t.Context(), b); err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
	}
	kv, _ := js.KeyValue(t.Context(), wire.BucketResults)
	st2, _ := kv.Status(t.Context())
	if st2.TTL() != time.Minute {
		t.Fatalf("results TTL = %v", st2.TTL())
	}
	bc := d.BatchConsumer("llama3.2:3b", wire.High)
	if bc.FilterSubject != "herd.batch.llama3%2E2:3b.high" || bc.MaxDeliver != 3 {
		t.Fatalf("batch consumer = %+v", bc)
	}
}
