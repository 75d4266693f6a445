package coalesce

import (
	"testing"
	"time"
)

// TestTable: followers of a key wait for its leader and are taken only
// with that leader's outcome; deadlines and re-checks come due; cancel
// (Remove) and shutdown (Drain) find them.
func TestTable(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	tb := NewTable[string]()
	f := func(id string, dl time.Time) Follower[string] {
		return Follower[string]{ID: id, Deadline: dl, Held: "msg-" + id}
	}

	if tb.HoldLocal("k", f("a", time.Time{})) {
		t.Fatal("held locally with no group for the key")
	}
	if tb.Hold(t0, "k", "a", f("a", time.Time{})) {
		t.Fatal("the leader itself was held")
	}
	if !tb.HoldLocal("k", f("b", time.Time{})) || !tb.Hold(t0, "k", "a", f("c", t0.Add(time.Second))) {
		t.Fatal("followers of a led key were not held")
	}
	if n := tb.Held(); n != 2 {
		t.Fatalf("held %d, want 2", n)
	}
	if got := tb.Take("k", "someone-else"); got != nil {
		t.Fatalf("another leader's outcome took the group: %v", got)
	}

	// After 1s c's deadline passed; the group is not due for a check yet.
	expired, waiting, checks := tb.Due(t0.Add(time.Second), 2*time.Second, time.Second)
	if len(expired) != 1 || expired[0].ID != "c" || len(waiting) != 1 || len(checks) != 0 {
		t.Fatalf("at 1s: expired %v waiting %v checks %v", expired, waiting, checks)
	}
	_, _, checks = tb.Due(t0.Add(2*time.Second), 2*time.Second, time.Second)
	if len(checks) != 1 || checks[0] != (Check{"k", "a"}) {
		t.Fatalf("at 2s: checks %v, want k led by a", checks)
	}
	if _, _, checks = tb.Due(t0.Add(2500*time.Millisecond), 2*time.Second, time.Second); len(checks) != 0 {
		t.Fatalf("re-checked within a second: %v", checks)
	}

	if _, ok := tb.Remove(func(f Follower[string]) bool { return f.ID == "b" }); !ok || tb.Held() != 0 {
		t.Fatal("Remove did not take b out")
	}
	got := tb.Take("k", "a")
	if got == nil || len(got) != 0 {
		t.Fatalf("Take of the emptied group: %v, want an empty group", got)
	}
	if tb.Take("k", "a") != nil {
		t.Fatal("a group was taken twice")
	}

	tb.Hold(t0, "x", "", f("y", time.Time{}))
	if got := tb.Take("x", "anyone"); len(got) != 1 {
		t.Fatalf("a group whose leader is unknown: took %v", got)
	}
	tb.Hold(t0, "z", "l", f("m", time.Time{}))
	if all := tb.Drain(); len(all) != 1 || tb.Held() != 0 {
		t.Fatalf("Drain: %v", all)
	}
}
