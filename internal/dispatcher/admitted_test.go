package dispatcher

import (
	"testing"
	"time"

	"github.com/sutazai/herd/internal/job"
)

// TestAdmittedTakesOnlyItsMessage: an admission is reused only for the
// message it was made of (same subject, reply subject and body), once,
// while fresh; another ask under the same id does not take it.
func TestAdmittedTakesOnlyItsMessage(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := newAdmitted()
	it := job.Item{ID: "a=1", Reply: "_INBOX.one"}
	a.put("herd.req.normal.a.ask", []byte(`{"x":1}`), it, now)
	if _, ok := a.take("a=1", "herd.req.normal.a.ask", "_INBOX.two", []byte(`{"x":1}`), now); ok {
		t.Fatal("another reply subject took the admission")
	}
	a.put("herd.req.normal.a.ask", []byte(`{"x":1}`), it, now)
	if _, ok := a.take("a=1", "herd.req.normal.a.ask", "_INBOX.one", []byte(`{"x":2}`), now); ok {
		t.Fatal("another body took the admission")
	}
	a.put("herd.req.normal.a.ask", []byte(`{"x":1}`), it, now)
	if _, ok := a.take("a=1", "herd.req.normal.a.ask", "_INBOX.one", []byte(`{"x":1}`), now.Add(admittedFor)); ok {
		t.Fatal("a stale admission was taken")
	}
	a.put("herd.req.normal.a.ask", []byte(`{"x":1}`), it, now)
	if got, ok := a.take("a=1", "herd.req.normal.a.ask", "_INBOX.one", []byte(`{"x":1}`), now); !ok || got.ID != "a=1" {
		t.Fatal("its own message did not take the admission")
	}
	if _, ok := a.take("a=1", "herd.req.normal.a.ask", "_INBOX.one", []byte(`{"x":1}`), now); ok {
		t.Fatal("an admission was taken twice")
	}
}
