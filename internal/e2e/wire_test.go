package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/wire"
)

// ledger publishes requests at the wire level and counts every reply per
// request id (internal/harness's Ledger), so that a lost or duplicated
// answer shows.
type ledger struct {
	*harness.Ledger[[]byte]
	t      *testing.T
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
}

func (s *stack) ledger() *ledger {
	nc, js := s.srv.Connect(s.t)
	l := &ledger{Ledger: harness.NewLedger[[]byte](), t: s.t, nc: nc, js: js, prefix: nc.NewRespInbox()}
	sub, err := nc.Subscribe(l.prefix+".*", func(m *nats.Msg) {
		// Replies to its inbox count even for requests it did not send
		// itself (a batch a test published with this inbox).
		id := m.Subject[len(l.prefix)+1:]
		l.Add(id, nil)
		l.ObserveAs(id, m)
	})
	if err != nil {
		s.t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	return l
}

// send publishes body as request id with the given extra headers
// (key/value pairs) and returns when JetStream acknowledged it.
func (l *ledger) send(p wire.Priority, agent, id string, body []byte, hdr ...string) {
	l.t.Helper()
	m := nats.NewMsg(wire.ReqSubject(p, agent))
	m.Data = body
	m.Header.Set(wire.HdrMsgID, id)
	m.Header.Set(wire.HdrReplyTo, l.prefix+"."+id)
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	l.Add(id, body)
	if _, err := l.js.PublishMsg(l.t.Context(), m); err != nil {
		l.t.Errorf("publish %s: %v", id, err)
	}
}

// final returns the first final reply for id, or nil.
func (l *ledger) final(id string) *nats.Msg {
	if e, _ := l.Entry(id); len(e.Finals) > 0 {
		return e.Finals[0]
	}
	return nil
}

// wait polls until every id has a final reply.
func (l *ledger) wait(ids []string, total time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(total)
	for {
		missing := 0
		for _, id := range ids {
			if l.final(id) == nil {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%d of %d requests have no answer after %v", missing, len(ids), total)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counts returns how many ids got no reply and how many got more than one.
func (l *ledger) counts(ids []string) (lost, duplicated int) {
	for _, id := range ids {
		e, _ := l.Entry(id)
		switch n := len(e.Finals); {
		case n == 0:
			lost++
		case n > 1:
			duplicated++
		}
	}
	return lost, duplicated
}

func status(m *nats.Msg) int {
	n, _ := strconv.Atoi(m.Header.Get(wire.HdrStatus))
	return n
}

func errorBody(t *testing.T, m *nats.Msg) wire.ErrorBody {
	t.Helper()
	var eb wire.ErrorBody
	if err := json.Unmarshal(m.Data, &eb); err != nil {
		t.Fatalf("error body %q: %v", m.Data, err)
	}
	return eb
}

func genBody(model, prompt string, extra string) []byte {
	return fmt.Appendf(nil, `{"model":%q,"prompt":%q%s}`, model, prompt, extra)
}
