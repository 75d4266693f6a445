package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// TestFollowersKeepToTheirShare: followers held for a coalescing leader
// are unacknowledged, so they count against their priority consumer's
// max_ack_pending; herd holds at most a quarter of it in followers, and
// identical requests past that run on their own, so they never stall the
// priority. Every request is answered once.
func TestFollowersKeepToTheirShare(t *testing.T) {
	s := newStack(t, stackOpts{lateDispatcher: true})
	_, js := s.srv.Connect(t)
	cons, err := js.Consumer(t.Context(), wire.StreamReq, wire.ReqConsumerName(wire.Normal))
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.MaxAckPending = 8 // a share of 2 followers
	if _, err := js.UpdateConsumer(t.Context(), wire.StreamReq, cfg); err != nil {
		t.Fatal(err)
	}
	s.startDispatcher()
	s.waitModels()
	release := s.fake.Block()
	defer release()
	l := s.ledger()
	body := genBody("tiny", "the same question", `,"options":{"temperature":0}`)
	l.send(wire.Normal, "a", "leader", body)
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s.fake.InFlight() != 1 {
			return fmt.Errorf("leader not running")
		}
		return nil
	})
	ids := []string{"leader"}
	for i := range 6 {
		id := fmt.Sprintf("same-%d", i)
		ids = append(ids, id)
		l.send(wire.Normal, "a", id, body)
	}
	// The 4 past the share are batched (acknowledged: HERD_REQ keeps only
	// the 2 held followers), not held.
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if held, left := s.disp.Held(), streamMsgs(t, s, wire.StreamReq); held != 2 || left != 2 {
			return fmt.Errorf("%d followers held and %d requests unacknowledged, want the share of 2 each", held, left)
		}
		return nil
	})
	release()
	l.wait(ids, 15*time.Second)
	time.Sleep(200 * time.Millisecond)
	if lost, dup := l.counts(ids); lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d", lost, dup)
	}
}
