package testbin

import (
	"runtime"
	"testing"
)

func TestFreePortsDistinct(t *testing.T) {
	ports := FreePorts(t, 8)
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 8 distinct positive ports", ports)
		}
		seen[p] = true
	}
	if p := FreePort(t); p <= 0 {
		t.Fatalf("FreePort = %d", p)
	}
}

// TestMissingTool: a missing tool skips the test, and fails it when
// RequireEnv is set to any non-empty value.
func TestMissingTool(t *testing.T) {
	for _, tc := range []struct {
		env        string
		skip, fail bool
	}{
		{env: "", skip: true},
		{env: "1", fail: true},
		{env: "yes", fail: true},
	} {
		t.Run("require="+tc.env, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			var skipped, failed bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				r := &recorder{TB: t}
				defer func() { skipped, failed = r.skipped, r.failed }()
				Tool(r, "no-such-tool-herd")
			}()
			<-done
			if skipped != tc.skip || failed != tc.fail {
				t.Fatalf("skipped %v failed %v, want %v %v", skipped, failed, tc.skip, tc.fail)
			}
		})
	}
}

// recorder notes a skip or a failure and ends the goroutine instead of
// the test.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skip(...any)           { r.skipped = true; runtime.Goexit() }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }
