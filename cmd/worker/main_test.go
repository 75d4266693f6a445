package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/testbin"
)

// env is the test's environment without herd's settings (HERD_*, which
// the configuration would read, and OLLAMA_HOST).
func env() []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERD_") && !strings.HasPrefix(kv, "OLLAMA_HOST=") {
			e = append(e, kv)
		}
	}
	return e
}

// TestSecondWorkerOnSamePortFails: a second worker told to serve /metrics
// on the port the first one holds exits non-zero at once, naming the
// port, instead of running without /metrics; the first keeps serving.
func TestSecondWorkerOnSamePortFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker")
	}
	bin := filepath.Join(testbin.Binaries(t), "worker")
	srv := natstest.Start(t)
	oll := ollamatest.New(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))
	args := func(id string) []string {
		return []string{"--nats", srv.URL, "--ollama", oll.URL, "--http", addr, "--id", id, "--data", t.TempDir()}
	}

	ctx, cancel := context.WithCancel(t.Context())
	first := exec.CommandContext(ctx, bin, args("w1")...)
	first.Env = env()
	var firstErr bytes.Buffer
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = first.Wait() })
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return fmt.Errorf("first worker's /metrics: %v\n%s", err, firstErr.String())
		}
		_ = resp.Body.Close()
		return nil
	})

	second := exec.Command(bin, args("w2")...)
	second.Env = env()
	start := time.Now()
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("second worker: %v, want a non-zero exit\n%s", err, out)
	}
	if !strings.Contains(string(out), "http listen "+addr) || !strings.Contains(string(out), "address already in use") {
		t.Errorf("second worker said %q, want the port %s and why", out, addr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second worker took %v to fail", d)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil {
		t.Errorf("first worker stopped serving: %v", err)
	} else {
		_ = resp.Body.Close()
	}
}

// TestVersion: --version prints the version, from the -ldflags variable
// when the build sets it, else from the build information.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the worker")
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/sutazai/herd/internal/version.version=1.2.3-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || string(out) != "worker version 1.2.3-test\n" {
		t.Fatalf("worker --version: %q, %v", out, err)
	}
}
