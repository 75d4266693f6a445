package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sutazai/herd/internal/managed"
)

// RequireEnv names the environment variable that turns a missing tool from
// a skip into a failure: any non-empty value sets it.
const RequireEnv = "HERD_REQUIRE_OLLAMA"

var (
	// buildMu guards the fields below.
	buildMu  sync.Mutex
	buildDir string
	buildErr error
	built    bool
)

// Binaries builds every command of herd (herd, dispatcher, worker,
// optimizer) into a temporary directory once per test binary and returns
// that directory. A failed build fails the calling test, and every later
// one. The directory stays until Cleanup.
func Binaries(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if !built {
		built = true
		buildDir, buildErr = os.MkdirTemp("", "herd-bin-")
		if buildErr == nil {
			out, err := exec.Command("go", "build", "-o", buildDir+string(filepath.Separator), "github.com/sutazai/herd/cmd/...").CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			}
		}
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// Cleanup removes the commands Binaries built, if any. Call it from
// TestMain after m.Run; Binaries builds them again when called after it.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	buildDir, buildErr, built = "", nil, false
}

// Tool returns the path of the pinned tool name in bin/ of the working
// directory or of the nearest directory above it that holds a go.mod (the
// module root). Without it the test is skipped, or fails when RequireEnv
// is set.
func Tool(t testing.TB, name string) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		p := filepath.Join(dir, "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	missing(t, fmt.Errorf("bin/%s missing: run make tools", name))
	return ""
}

// Ollama returns the pinned Ollama binary: $HERD_OLLAMA_BIN when set (it
// must be an executable file), else bin/ollama at the module root
// (managed.RepoBinary). Without it the test is skipped, or fails when
// RequireEnv is set.
func Ollama(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(managed.BinaryEnv); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing(t, fmt.Errorf("%s=%s is not an executable file", managed.BinaryEnv, p))
		}
		return p
	}
	p, err := managed.RepoBinary()
	if err != nil {
		missing(t, fmt.Errorf("needs the pinned Ollama (make tools, or set %s): %w", managed.BinaryEnv, err))
	}
	return p
}

// missing skips the test for err, or fails it when RequireEnv is set.
func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s is set but %v", RequireEnv, err)
	}
	t.Skip(err)
}

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the caller listens on it.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago: each stays taken until all n are found.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
