package dispatcher

import (
	"fmt"
	"testing"

	"github.com/sutazai/herd/internal/policy"
)

// TestAutoPublishedKeepsProfileModelsOnly: the auto selection reads the
// batch sizes of the models its profiles name only. Batches of any other
// model (while no worker is live, the door admits any model name an agent
// sends) must not each leave an entry behind for good.
func TestAutoPublishedKeepsProfileModelsOnly(t *testing.T) {
	a := newAutoSelector(policy.AutoConfig{Profiles: []policy.Profile{{Name: "p", Models: []string{"fast", "deep"}}}}, nil)
	for i := range 1000 {
		a.published(fmt.Sprintf("made-up-%d", i), 3)
	}
	a.published("fast", 4)
	if len(a.avgSize) != 1 || a.avgSize["fast"] != 4 {
		t.Fatalf("batch sizes kept for %d models (%v), want only the profile model fast", len(a.avgSize), a.avgSize["fast"])
	}
}
