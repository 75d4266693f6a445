package outcome_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/outcome"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestClaimResult: the first outcome stored for a request wins; a second
// run of the request loses even when its outcome has the same bytes (an
// invalid request answered twice), and a retry of the winning write (its
// acknowledgement lost) still wins.
func TestClaimResult(t *testing.T) {
	s, _ := newStore(t)
	first := outcome.FromError("r1", wire.Errorf(wire.CodeInvalidRequest, "bad"))
	if won, err := s.ClaimResult(t.Context(), first, "run-1"); err != nil || !won {
		t.Fatalf("first claim: won %v, %v", won, err)
	}
	again := outcome.FromError("r1", wire.Errorf(wire.CodeInvalidRequest, "bad"))
	if won, err := s.ClaimResult(t.Context(), again, "run-2"); err != nil || won {
		t.Fatalf("second run with the same content: won %v, %v; want lost", won, err)
	}
	if won, err := s.ClaimResult(t.Context(), first, "run-1"); err != nil || !won {
		t.Fatalf("retry of the first write: won %v, %v; want won", won, err)
	}
	o, err := s.Result(t.Context(), "r1")
	if err != nil || o == nil || o.Claim != "run-1" {
		t.Fatalf("stored %+v, %v", o, err)
	}
}

// TestNotOutcome: what herd did not write under a result or cache key (a
// JetStream acknowledgement sent there as a forged reply subject, for
// example) is never taken for an answer, and a result claim replaces it.
func TestNotOutcome(t *testing.T) {
	s, js := newStore(t)
	ack := []byte(`{"stream":"HERD_REQ","seq":7}`)
	for _, b := range []string{wire.BucketResults, wire.BucketCache} {
		kv, err := js.KeyValue(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), "forged", ack); err != nil {
			t.Fatal(err)
		}
	}
	if o, err := s.Cached(t.Context(), "forged"); o != nil || !errors.Is(err, outcome.ErrNotOutcome) {
		t.Fatalf("cache entry that is not an outcome: %+v, %v", o, err)
	}
	if o, err := s.Result(t.Context(), "forged"); o != nil || !errors.Is(err, outcome.ErrNotOutcome) {
		t.Fatalf("result that is not an outcome: %+v, %v", o, err)
	}
	real := outcome.FromError("forged", wire.Errorf(wire.CodeInternal, "x"))
	if won, err := s.ClaimResult(t.Context(), real, "run-1"); err != nil || !won {
		t.Fatalf("claim over a forged entry: won %v, %v", won, err)
	}
	if o, err := s.Result(t.Context(), "forged"); err != nil || o == nil || o.Claim != "run-1" {
		t.Fatalf("after the claim: %+v, %v", o, err)
	}
}

// TestClaimAfterLostAck: a claim whose write was stored but not
// acknowledged leaves the request answered by nobody unless its next
// delivery here claims with the same token; then it wins, and a run in
// another process still loses.
func TestClaimAfterLostAck(t *testing.T) {
	s, _ := newStore(t)
	here, elsewhere := outcome.NewClaims(time.Minute, 16), outcome.NewClaims(time.Minute, 16)
	o := outcome.FromError("r1", wire.Errorf(wire.CodeModelNotFound, "no such model"))
	lost := here.Token("r1")
	if won, err := s.ClaimResult(t.Context(), o, lost); err != nil || !won {
		t.Fatalf("first claim: won %v, %v", won, err)
	}
	here.Failed("r1", lost) // as if its acknowledgement had not come

	other := outcome.FromError("r1", wire.Errorf(wire.CodeModelNotFound, "no such model"))
	if won, err := s.ClaimResult(t.Context(), other, elsewhere.Token("r1")); err != nil || won {
		t.Fatalf("a run in another process: won %v, %v; want lost", won, err)
	}
	again := outcome.FromError("r1", wire.Errorf(wire.CodeModelNotFound, "no such model"))
	if won, err := s.ClaimResult(t.Context(), again, here.Token("r1")); err != nil || !won {
		t.Fatalf("the redelivery here: won %v, %v; want won (its own write)", won, err)
	}
}

// newStore returns a Store on a new provisioned server, and the
// JetStream it uses.
func newStore(t *testing.T) (*outcome.Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	_, js := srv.Connect(t)
	s, err := outcome.NewStore(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}
