package client_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestStreamRecoveredAfterReconnect: a streaming call whose connection
// reconnects after two chunks never sees the rest of the stream (core NATS
// keeps no reply); the SDK finds the whole answer in herd_results and
// gives only the text the caller has not seen, so the chunks add up to the
// answer once, not with its beginning twice.
func TestStreamRecoveredAfterReconnect(t *testing.T) {
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	hnc, hjs := srv.Connect(t) // a stand-in for herd
	store, err := outcome.NewStore(t.Context(), hjs)
	if err != nil {
		t.Fatal(err)
	}
	chunk := func(seq int, text string) *nats.Msg {
		m := nats.NewMsg("")
		m.Data, _ = json.Marshal(map[string]any{"model": "m", "response": text, "done": false})
		m.Header.Set(wire.HdrSeq, strconv.Itoa(seq))
		return m
	}
	// Two chunks reach the agent; the rest of the stream is lost, and the
	// whole answer is stored.
	sub, err := hnc.Subscribe(wire.ReqPrefix+".>", func(req *nats.Msg) {
		reply, id := req.Header.Get(wire.HdrReplyTo), req.Header.Get(wire.HdrMsgID)
		for i, text := range []string{"Once ", "upon "} {
			m := chunk(i, text)
			m.Subject = reply
			_ = hnc.PublishMsg(m)
		}
		whole, _ := json.Marshal(map[string]any{"model": "m", "response": "Once upon a time.", "done": true, "eval_count": 4})
		if _, err := store.ClaimResult(t.Context(), &outcome.Outcome{RequestID: id, Status: 200, Body: whole}, "herd"); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	natstest.Flush(t, hnc)

	anc, _ := srv.Connect(t)
	c, err := client.New(anc, client.WithAgent("teller"))
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var chunks, reconnects atomic.Int32
	var last api.GenerateResponse
	stream := true
	_, err = c.GenerateStream(t.Context(), &api.GenerateRequest{Model: "m", Prompt: "a story", Stream: &stream}, func(r api.GenerateResponse) error {
		text.WriteString(r.Response)
		last = r
		if chunks.Add(1) == 2 && reconnects.Add(1) == 1 {
			go func() { _ = anc.ForceReconnect() }()
		}
		return nil
	}, client.Timeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := text.String(); got != "Once upon a time." || !last.Done || last.EvalCount != 4 {
		t.Fatalf("the chunks add up to %q (last done %v, eval_count %d), want %q with the final chunk's figures",
			got, last.Done, last.EvalCount, "Once upon a time.")
	}
	if n := chunks.Load(); n != 3 {
		t.Fatalf("%d chunks given, want the 2 streamed and one final", n)
	}
}
