package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestModelMissingDir: the README's `herd testmodel --dir /tmp/m`
// works when the folder does not exist yet.
func TestTestModelMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m", "nested")
	out, code := runCobra(t, t.Context(), newTestModel, "--dir", dir)
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, out)
	}
	for _, name := range []string{"Modelfile", "herd-tiny.gguf"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	if want := "wrote " + filepath.Join(dir, "Modelfile"); !strings.Contains(out, want) {
		t.Errorf("output %q lacks %q", out, want)
	}
}
