// Package examples_test runs the example agents (examples/js, examples/go)
// against herd up on the managed real Ollama.
package examples_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/testbin"
)

const model = "herd-tiny"

// up starts a managed Ollama with herd-tiny and herd up on it, and returns
// its NATS URL. Without the pinned Ollama the test is skipped, or fails
// when HERD_REQUIRE_OLLAMA is set.
func up(t *testing.T) string {
	t.Helper()
	bin := testbin.Ollama(t)
	if testing.Short() {
		t.Skip("starts a real Ollama server")
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	mctx, stopOllama := context.WithCancel(context.Background())
	inst, err := managed.Start(mctx, managed.Config{Binary: bin, Dir: t.TempDir(), NumParallel: 2, TestModels: []string{model}}, log)
	if err != nil {
		stopOllama()
		t.Fatal(err)
	}
	t.Cleanup(func() { stopOllama(); _ = inst.Wait() })
	c := config.Default()
	c.Server.Listen = "127.0.0.1:-1"
	c.Server.DataDir = t.TempDir()
	c.Server.SyncAlways = false
	c.HTTP.Listen, c.API.Listen = "", ""
	c.Ollama.URL = inst.URL()
	c.Worker.CPUBudget = 1
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- stack.Up(ctx, c, log, func(url string) { ready <- url }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("herd up: %v", err)
		}
	})
	select {
	case url := <-ready:
		return url
	case err := <-done:
		t.Fatalf("herd up: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("herd up: not ready after two minutes")
	}
	return ""
}

// runAgent runs an example and returns what it printed.
func runAgent(t *testing.T, natsURL, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "HERD_MODEL="+model)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout: %s\nstderr: %s", name, args, err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// TestExamples: the JavaScript agent (durable publish, recovery by lookup
// after a reconnect, streaming with Herd-Seq) and the Go agent (call,
// retry under the same id, streaming) run to the end against herd up.
func TestExamples(t *testing.T) {
	url := up(t)
	t.Run("go", func(t *testing.T) {
		out := runAgent(t, url, "go", "go", "run", ".")
		for _, want := range []string{"generate: go-agent=", "retry: same answer", "stream: "} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		t.Log(out)
	})
	t.Run("js", func(t *testing.T) {
		nodeBin, err := exec.LookPath("node")
		if err == nil {
			_, err = os.Stat("js/node_modules/@nats-io/transport-node/package.json")
		}
		if err != nil {
			if os.Getenv("HERD_REQUIRE_NPM") != "" {
				t.Fatalf("node and the npm packages are required (cd examples/js && npm ci): %v", err)
			}
			t.Skipf("no node or npm packages (cd examples/js && npm ci): %v", err)
		}
		out := runAgent(t, url, "js", nodeBin, "agent.mjs")
		for _, want := range []string{"durable: js-agent=", "status 200", "recovered: js-agent=", "stream: "} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		t.Log(out)
	})
}
