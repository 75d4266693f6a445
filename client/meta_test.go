package client_test

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/wire"
)

// TestMetaOf: every reply header herd sets reaches Meta, Herd-Model too,
// so a caller of "model": "auto" sees which model answered.
func TestMetaOf(t *testing.T) {
	h := nats.Header{}
	h.Set(wire.HdrRequestID, "r1")
	h.Set(wire.HdrStatus, "200")
	h.Set(wire.HdrCache, wire.CacheHit)
	h.Set(wire.HdrQueueMs, "3")
	h.Set(wire.HdrTotalMs, "23")
	h.Set(wire.HdrBatchSize, "4")
	h.Set(wire.HdrWorker, "w1")
	h.Set(wire.HdrModel, "herd-tiny")
	want := client.Meta{RequestID: "r1", Status: 200, Cache: "hit", QueueMs: 3, TotalMs: 23, BatchSize: 4, Worker: "w1", Model: "herd-tiny"}
	if got := client.MetaOf(h); *got != want {
		t.Errorf("MetaOf = %+v, want %+v", *got, want)
	}
}
