package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/sutazai/herd/internal/testbin"
)

// TestEveryBinaryVersion: herd, dispatcher, worker and optimizer each
// answer --version with their name and herd's version (version.String: from
// the build information here, as no -ldflags variable is set; the test
// binary itself is not stamped, so any version is accepted).
func TestEveryBinaryVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	dir := testbin.Binaries(t)
	for _, name := range []string{"herd", "dispatcher", "worker", "optimizer"} {
		out, err := exec.Command(filepath.Join(dir, name), "--version").CombinedOutput()
		want := "^" + name + " version " + `\S+` + "\n$"
		if err != nil || !regexp.MustCompile(want).Match(out) {
			t.Errorf("%s --version: %q, %v; want %s", name, out, err, want)
		}
	}
}
