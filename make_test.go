package herd_test

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// makeDryRun returns the commands `make -n target` would run.
func makeDryRun(t *testing.T, target string) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out, err := exec.CommandContext(t.Context(), "make", "-n", target).CombinedOutput()
	if err != nil {
		t.Fatalf("make -n %s: %v\n%s", target, err, out)
	}
	return string(out)
}

// installedTools returns the tools the scripts/tools.sh lines of a dry run
// install.
func installedTools(dry string) []string {
	var tools []string
	for _, m := range regexp.MustCompile(`(?m)scripts/tools\.sh((?: [a-z-]+)*)\s*$`).FindAllStringSubmatch(dry, -1) {
		tools = append(tools, strings.Fields(m[1])...)
	}
	slices.Sort(tools)
	return slices.Compact(tools)
}

// TestMakeRunInstallsOnlyOllama: `make run` (the README's first command)
// builds what `herd up` runs, the pinned Ollama, and nothing else: promtool
// took about 6 minutes of a fresh 2-core machine and herd up never uses it
// or the nats CLI. The tests' tools come with `make test`.
func TestMakeRunInstallsOnlyOllama(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"run", []string{"ollama"}},
		{"test", []string{"nats", "nats-server", "ollama", "promtool"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			dry := makeDryRun(t, tc.target)
			if got := installedTools(dry); !slices.Equal(got, tc.want) {
				t.Errorf("make %s installs %v, want %v:\n%s", tc.target, got, tc.want, dry)
			}
		})
	}
}
