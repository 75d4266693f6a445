package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter returns a random wait in [d/2, d] ("equal jitter"): half of d is
// kept, so a retry never comes at once, and the other half is drawn
// uniformly. A d of zero or less is returned as it is. It is safe for
// concurrent use.
func Jitter(d time.Duration) time.Duration { return equal(d, rand.Float64()) }

// equal is Jitter with the random draw u in [0, 1) given.
func equal(d time.Duration, u float64) time.Duration {
	if d <= 0 {
		return d
	}
	half := d / 2
	return half + time.Duration(u*float64(d-half))
}
