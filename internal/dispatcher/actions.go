package dispatcher

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// action is what becomes of a request's message in HERD_REQ once this
// dispatcher is done with it. done is the one place actions become
// JetStream calls.
type action int

const (
	// actSettled: the request's outcome is stored, or it is in a stored
	// batch; JetStream forgets it.
	actSettled action = iota
	// actRetry: it could not be settled now (a store not answered); it comes
	// back after retryDelay, to any dispatcher.
	actRetry
	// actDrop: it can never be served (no subject to answer on) and is
	// dead-lettered; it is not delivered again.
	actDrop
	// actHandBack: this dispatcher stops (shutdown, or it cannot take it
	// now); it is delivered again at once, to another dispatcher.
	actHandBack
)

// retryDelay is how long a request that could not be settled waits before
// its next delivery.
const retryDelay = time.Second

// done applies a to msg. Errors are not returned: a lost acknowledgement
// only means a redelivery, which settledBefore recognises.
func done(msg jetstream.Msg, a action) {
	switch a {
	case actSettled:
		_ = msg.Ack()
	case actRetry:
		_ = msg.NakWithDelay(retryDelay)
	case actDrop:
		_ = msg.Term()
	case actHandBack:
		_ = msg.Nak()
	}
}
