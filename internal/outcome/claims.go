package outcome

import (
	"sync"
	"time"

	"github.com/nats-io/nuid"
)

// Claims remembers the claim of each ClaimResult that failed, so that the
// request's next delivery to this process claims with the same token: when
// the failed write was in fact stored (its acknowledgement lost in a leader
// change), that delivery finds its own outcome, wins, and answers; with a
// new token it would see another run's outcome and answer nobody. Another
// process, or a run started while the failed one was still trying, gets a
// new token, so two runs never both win. The zero value is not usable: use
// NewClaims. Claims is safe for concurrent use.
type Claims struct {
	ttl time.Duration
	max int
	now func() time.Time

	// mu guards failed.
	mu     sync.Mutex
	failed map[string]failedClaim // by request id
}

type failedClaim struct {
	token string
	at    time.Time
}

// NewClaims returns a Claims that keeps a failed claim for ttl (it should
// outlast the request's redeliveries) and at most max of them, the oldest
// forgotten first.
func NewClaims(ttl time.Duration, max int) *Claims {
	return &Claims{ttl: ttl, max: max, now: time.Now, failed: map[string]failedClaim{}}
}

// Token returns the claim for a new attempt to store id's outcome: the one
// that failed last for id in this process, or a new one. Either way the
// token is taken: a second Token(id) returns another new one until Failed
// hands it back.
func (c *Claims) Token(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failed[id]
	delete(c.failed, id)
	if ok && c.now().Sub(f.at) < c.ttl {
		return f.token
	}
	return nuid.Next()
}

// Stored reports whether claim, found stored as id's outcome, is the one
// that failed last for id here: the write was stored though its
// acknowledgement was lost, and the caller was never sent it. It forgets
// the claim, so only one delivery answers.
func (c *Claims) Stored(id, claim string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failed[id]
	if !ok || claim == "" || f.token != claim {
		return false
	}
	delete(c.failed, id)
	return true
}

// Failed records that the claim token for id was not answered (stored or
// not, nobody knows), for the request's next delivery here to use again.
func (c *Claims) Failed(id, token string) {
	if c.max < 1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.failed) >= c.max {
		c.prune(now)
	}
	c.failed[id] = failedClaim{token: token, at: now}
}

// prune drops expired claims and, while still full, the oldest. c.mu is held.
func (c *Claims) prune(now time.Time) {
	for id, f := range c.failed {
		if now.Sub(f.at) >= c.ttl {
			delete(c.failed, id)
		}
	}
	for len(c.failed) >= c.max {
		var oldest string
		var at time.Time
		for id, f := range c.failed {
			if oldest == "" || f.at.Before(at) {
				oldest, at = id, f.at
			}
		}
		delete(c.failed, oldest)
	}
}
