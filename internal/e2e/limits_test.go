package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestPerAgentShare: queue.max_per_agent bounds one agent's requests
// waiting in HERD_REQ (per priority and door): past it the agent's
// publish fails at once (429 queue_full naming its share at the ask
// door) while other agents go on.
func TestPerAgentShare(t *testing.T) {
	s := newStack(t, stackOpts{noWorkers: true, overrides: provision.Overrides{MaxPerAgent: 2}})
	nc, js := s.srv.Connect(t)
	publish := func(agent, id string) error {
		m := nats.NewMsg(wire.ReqSubject(wire.Normal, agent))
		m.Data = genBody("tiny", "waits for a worker", "")
		m.Header.Set(wire.HdrMsgID, id)
		m.Header.Set(wire.HdrReplyTo, nats.NewInbox())
		_, err := js.PublishMsg(t.Context(), m)
		return err
	}
	for i := range 2 {
		if err := publish("greedy", fmt.Sprintf("g%d", i)); err != nil {
			t.Fatalf("greedy's request %d within its share: %v", i, err)
		}
	}
	err := publish("greedy", "g2")
	if !wire.QueueFull(err) {
		t.Fatalf("greedy's third request: %v, want the queue full for it", err)
	}
	if err := publish("polite", "p0"); err != nil {
		t.Fatalf("another agent is refused while greedy is over its share: %v", err)
	}
	for i := range 2 {
		m := nats.NewMsg(wire.AskSubject(wire.Normal, "greedy"))
		m.Data = genBody("tiny", "ask", "")
		if i == 0 {
			if err := nc.PublishMsg(m); err != nil { // takes the ask subject's share
				t.Fatal(err)
			}
			continue
		}
	}
	var r *nats.Msg
	for range 3 {
		m := nats.NewMsg(wire.AskSubject(wire.Normal, "greedy"))
		m.Data = genBody("tiny", "ask", "")
		if r, err = nc.RequestMsg(m, 2*time.Second); err == nil {
			break
		}
	}
	if r == nil || status(r) != 429 || !strings.Contains(errorBody(t, r).Error, "queue.max_per_agent") {
		t.Fatalf("greedy's ask over its share: %v %v, want 429 naming queue.max_per_agent", r, err)
	}
}

// TestEmbedInputsCapped: an embed request with more inputs than
// dispatcher.max_embed_inputs is refused before it runs.
func TestEmbedInputsCapped(t *testing.T) {
	s := newStack(t, stackOpts{dcfg: func(c *dispatcherConfig) { c.MaxEmbedInputs = 4 }})
	nc, _ := s.srv.Connect(t)
	inputs := `["a","b","c","d","e"]`
	r := ask(t, nc, "alice", "", fmt.Appendf(nil, `{"model":"tiny","input":%s}`, inputs))
	if status(r) != 400 || !strings.Contains(errorBody(t, r).Error, "max_embed_inputs") {
		t.Fatalf("5 inputs over a cap of 4: %d %s", status(r), r.Data)
	}
	if r := ask(t, nc, "alice", "", []byte(`{"model":"tiny","input":["a","b","c","d"]}`)); status(r) != 200 {
		t.Fatalf("4 inputs: %d %s", status(r), r.Data)
	}
	if n := s.fake.Calls("embed"); n != 1 {
		t.Fatalf("Ollama embed calls %d, want 1", n)
	}
}
