package outcome_test

import (
	"testing"

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
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	_, js := srv.Connect(t)
	s, err := outcome.NewStore(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
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
