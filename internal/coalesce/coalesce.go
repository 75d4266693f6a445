// Package coalesce owns herd's coalescing protocol: identical requests
// (the same cache key) waiting or running anywhere in the cluster produce
// one Ollama call and one answer per caller (docs/architecture.md,
// "Coalescing across the cluster").
//
// The protocol, in one place:
//
//   - A key's leader is the request whose id is stored in
//     herd_inflight/<key> (KV create: atomic in the cluster). It runs; its
//     claim's revision travels with it (job.Item.ClaimRevision).
//   - Every other request for the key is a follower: a dispatcher holds it
//     unacknowledged in its Table until the leader ends.
//   - Whoever settles the leader (a worker, or a dispatcher giving it up)
//     calls Release: the outcome is announced on herd.done.<key> and
//     exactly the leader's claim is deleted (by revision; a newer claim
//     stays).
//   - A leader that was canceled is no answer for its followers: Drop frees
//     the key and they run again, the first of them leading.
//   - A group that waited long is re-checked (Due): answered from
//     herd_results when the announcement was missed, released to run again
//     when the claim is gone.
//
// herd_inflight is a memory bucket: losing it (a server restart) only
// repeats work, and held followers are redelivered since they were never
// acknowledged.
package coalesce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/wire"
)

// Claims is the cluster-wide half of the protocol: leader claims in
// herd_inflight and announcements on herd.done.<key>.
type Claims struct {
	nc *nats.Conn
	kv jetstream.KeyValue
}

// NewClaims returns Claims on the herd_inflight bucket kv.
func NewClaims(nc *nats.Conn, kv jetstream.KeyValue) *Claims { return &Claims{nc: nc, kv: kv} }

// Claim makes id the leader of key unless another request leads it. It
// returns the leader ("" when the claim exists but cannot be read) and
// the claim's revision. It blocks until the server answered.
func (c *Claims) Claim(ctx context.Context, key, id string) (leader string, rev uint64, err error) {
	rev, err = c.kv.Create(ctx, key, []byte(id))
	if err == nil {
		return id, rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", 0, fmt.Errorf("claim %s: %w", key, err)
	}
	e, err := c.kv.Get(ctx, key)
	if err != nil {
		return "", 0, nil // it existed a moment ago: follow whoever leads
	}
	return string(e.Value()), e.Revision(), nil
}

// Leading reports whether leader still holds key's claim; an error means
// the bucket could not be asked.
func (c *Claims) Leading(ctx context.Context, key, leader string) (bool, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(e.Value()) == leader, nil
}

// Release announces the leader's outcome on herd.done.<key> (its followers
// get it on every dispatcher) and deletes exactly the claim of revision
// rev. It returns the announcement's error, if any; a claim that was
// replaced meanwhile stays.
func (c *Claims) Release(ctx context.Context, key string, rev uint64, o *outcome.Outcome) error {
	b, err := json.Marshal(o)
	if err == nil {
		err = c.nc.Publish(wire.DoneSubject(key), b)
	}
	_ = c.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	return err
}

// Drop frees key when leader still holds it: the leader ended without an
// answer for its followers (canceled), and they run again.
func (c *Claims) Drop(ctx context.Context, key, leader string) {
	if e, err := c.kv.Get(ctx, key); err == nil && string(e.Value()) == leader {
		_ = c.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	}
}

// Done decodes an announcement on herd.done.<key>: the key and the
// leader's outcome.
func Done(m *nats.Msg) (key string, o *outcome.Outcome, err error) {
	key = m.Subject[len(wire.DonePrefix)+1:]
	var out outcome.Outcome
	if err := json.Unmarshal(m.Data, &out); err != nil {
		return key, nil, fmt.Errorf("done announcement for %s: %w", key, err)
	}
	return key, &out, nil
}

// AnswersFollowers reports whether a leader's outcome answers the
// requests that waited for it: not when the leader was canceled (by its
// agent, or because its agent left), since the followers still want an
// answer; they run again.
func AnswersFollowers(o *outcome.Outcome) bool { return o.Status != wire.CodeCanceled.Status() }
