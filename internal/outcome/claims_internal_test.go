package outcome

import (
	"testing"
	"time"
)

// TestClaims: a failed claim is handed to the request's next attempt here,
// once, while it is fresh; other requests and later attempts get new
// tokens; the memory stays within its bound, the oldest forgotten first.
func TestClaims(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := NewClaims(time.Minute, 3)
	c.now = func() time.Time { return now }

	a := c.Token("a")
	if b := c.Token("a"); b == a {
		t.Fatalf("two attempts without a failure share token %q", a)
	}
	c.Failed("a", a)
	if got := c.Token("a"); got != a {
		t.Fatalf("after a failed claim: token %q, want the failed one %q", got, a)
	}
	if got := c.Token("a"); got == a {
		t.Fatalf("the failed token was handed out twice")
	}
	if got := c.Token("b"); got == a {
		t.Fatalf("another request got a's token")
	}

	c.Failed("a", a)
	now = now.Add(time.Minute)
	if got := c.Token("a"); got == a {
		t.Fatalf("a failed claim older than its ttl was reused")
	}

	for i, id := range []string{"x", "y", "z", "w"} {
		now = now.Add(time.Second)
		c.Failed(id, "t-"+id)
		if len(c.failed) > 3 {
			t.Fatalf("after %d failures %d remembered, want at most 3", i+1, len(c.failed))
		}
	}
	if got := c.Token("x"); got == "t-x" {
		t.Fatalf("the oldest failed claim was kept past the bound")
	}
	for _, id := range []string{"y", "z", "w"} {
		if got := c.Token(id); got != "t-"+id {
			t.Fatalf("%s: token %q, want t-%s", id, got, id)
		}
	}

	// A failed claim found stored is this process's to send, once.
	c.Failed("s", "t-s")
	if c.Stored("s", "other") || c.Stored("t", "t-s") || c.Stored("s", "") {
		t.Fatalf("Stored matched another claim or request")
	}
	if !c.Stored("s", "t-s") || c.Stored("s", "t-s") {
		t.Fatalf("Stored of the failed claim: want true once")
	}

	// No room at all: nothing is kept, and nothing hangs.
	none := NewClaims(time.Minute, 0)
	none.Failed("a", "t-a")
	if none.Token("a") == "t-a" {
		t.Fatalf("a claims memory of size 0 kept a claim")
	}
}
