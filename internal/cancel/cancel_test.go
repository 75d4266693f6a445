package cancel

import (
	"fmt"
	"testing"
	"time"
)

// TestSet: a cancel counts only for the agent that sent it, expires after
// its TTL, and the set never holds more than its bound.
func TestSet(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := New(time.Minute, 3)
	s.now = func() time.Time { return now }
	s.Add("bob", "alice-job")
	if s.Canceled("alice", "alice-job") {
		t.Fatal("bob's cancel counted for alice's request")
	}
	s.Add("alice", "alice-job")
	if !s.Canceled("alice", "alice-job") {
		t.Fatal("alice's own cancel did not count")
	}
	now = now.Add(time.Minute)
	if s.Canceled("alice", "alice-job") {
		t.Fatal("a cancel older than its TTL still counts")
	}
	for i := range 10 {
		now = now.Add(time.Second)
		s.Add("mallory", fmt.Sprintf("x%d", i))
		if n := s.Len(); n > 3 {
			t.Fatalf("after %d cancels %d remembered, want at most 3", i+1, n)
		}
	}
	if !s.Canceled("mallory", "x9") || s.Canceled("mallory", "x0") {
		t.Fatal("the newest cancels must be kept, the oldest dropped")
	}
	if len(s.order) > 2*3+1 {
		t.Fatalf("order grew to %d", len(s.order))
	}
}
