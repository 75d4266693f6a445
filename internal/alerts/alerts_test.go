package alerts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/slo"
)

// shipped is the alert rules file compose.yaml's Prometheus loads.
const shipped = "../../deploy/prometheus/alerts.yml"

// TestShippedEqualsGenerated: deploy/prometheus/alerts.yml is what
// `herd alerts` renders from the default configuration (config/herd.yaml
// sets the defaults); regenerate it with
// `bin/herd alerts --out deploy/prometheus/alerts.yml`.
func TestShippedEqualsGenerated(t *testing.T) {
	got, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	if want := Render(slo.Default()); !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rules rendered from the default slo targets; run bin/herd alerts --out deploy/prometheus/alerts.yml", shipped)
	}
}

func TestRenderFollowsTargets(t *testing.T) {
	cfg := slo.Default()
	cfg.High = slo.Target{P95: 1500 * time.Millisecond, P99: 4 * time.Second, ErrorRate: 0.0005}
	cfg.Low.P95 = 30 * time.Second
	cfg.Window = 10 * time.Minute
	out := string(Render(cfg))
	for _, want := range []string{
		`histogram_quantile(0.95, sum by (le, priority) (rate(herd_request_duration_seconds_bucket{priority="high"}[10m]))) > 1.5`,
		`histogram_quantile(0.99, sum by (le, priority) (rate(herd_request_duration_seconds_bucket{priority="high"}[10m]))) > 4`,
		`histogram_quantile(0.95, sum by (le, priority) (rate(herd_request_duration_seconds_bucket{priority="low"}[10m]))) > 30`,
		`(target 1.5s)`,
		`) > 0.0005`,
		`high 0.05%, normal 0.1%, low 0.1%`,
		`alert: HerdQueueGrowing`, `alert: HerdServiceDown`, `alert: HerdBreakerOpen`, `alert: HerdDeadLettersGrowing`, `alert: HerdOllamaErrors`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered rules lack %q", want)
		}
	}
}

// TestPromtoolChecksRules runs promtool check rules on the rendered file
// when bin/promtool is there.
func TestPromtoolChecksRules(t *testing.T) {
	bin, err := filepath.Abs("../../bin/promtool")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no bin/promtool")
	}
	f := filepath.Join(t.TempDir(), "alerts.yml")
	if err := os.WriteFile(f, Render(slo.Default()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "rules", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
