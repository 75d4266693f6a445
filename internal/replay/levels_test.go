package replay

import (
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/slo"
)

// TestJudgeReadsTargets: the report judges each priority against the
// configured targets, and says what was missed.
func TestJudgeReadsTargets(t *testing.T) {
	r := &Report{ByPriority: map[string]*Summary{
		"high":   {Sent: 100, Answered: 100, P95Ms: 900, P99Ms: 1800},
		"normal": {Sent: 100, Answered: 98, Errors: 1, Lost: 1, P95Ms: 12000, P99Ms: 20000},
	}}
	r.Judge(slo.Default())
	if len(r.Levels) != 2 || !r.Levels[0].Met || r.Levels[1].Met {
		t.Fatalf("levels %+v, want high met and normal missed", r.Levels)
	}
	if got := strings.Join(r.Levels[1].Misses, ", "); got != "p95 12s above 2s, p99 20s above 5s, errors 2% above 0.1%" {
		t.Errorf("normal misses %q", got)
	}
	loose := slo.Default()
	loose.Normal = slo.Target{P95: 15 * time.Second, P99: 30 * time.Second, ErrorRate: 0.05}
	r.Judge(loose)
	if !r.Levels[1].Met {
		t.Errorf("normal under loose targets: %+v, want met", r.Levels[1])
	}
	var b strings.Builder
	r.Judge(slo.Default())
	r.writeLevels(&b)
	if !strings.Contains(b.String(), "normal MISSED: p95 12s above 2s") || !strings.Contains(b.String(), "high met") {
		t.Errorf("text %q", b.String())
	}
}
