package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/health"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/registry"
	"github.com/sutazai/herd/internal/wire"
)

// runCobra runs a command built by newCmd with args and returns its
// output and the exit code main would use (0 without an error).
func runCobra(t *testing.T, ctx context.Context, newCmd func() *cobra.Command, args ...string) (string, int) {
	t.Helper()
	cmd := newCmd()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(ctx); err != nil {
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

// drawCounter is the output of `herd status --watch`: it calls enough
// once want summaries (each starting with its QUEUES section) have begun.
type drawCounter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   int
	enough func()
}

func (w *drawCounter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Count(w.buf.String(), "QUEUES") >= w.want {
		w.enough()
	}
	return n, err
}

func (w *drawCounter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// putControl writes value under key in herd_control.
func putControl(t *testing.T, s *natstest.Server, key string, value []byte) {
	t.Helper()
	_, js := s.Connect(t)
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), key, value); err != nil {
		t.Fatal(err)
	}
}

func freshWorker(t *testing.T, s *natstest.Server) {
	t.Helper()
	putControl(t, s, registry.Key("w1"), registry.Registration{
		ID: "w1", Models: map[string]string{"tiny": "sha256:1"}, Slots: 4, CPUBudget: 2, At: time.Now(),
	}.Marshal())
}

// provisionedServer starts an in-process server with herd's streams,
// consumers and buckets.
func provisionedServer(t *testing.T) *natstest.Server {
	t.Helper()
	s := natstest.Start(t)
	s.Provision(t, provision.Overrides{})
	return s
}

// closedPort returns a loopback NATS URL that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "nats://" + addr
}

func TestHealthCommand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string // returns the NATS URL
		code  int
		lines []string // lines of the output that must appear
	}{
		{"ok", func(t *testing.T) string {
			s := provisionedServer(t)
			freshWorker(t, s)
			return s.URL
		}, 0, []string{"OK    nats", "OK    stream HERD_REQ", "OK    bucket herd_control", "OK    consumer HERD_REQ/req_high", "w1 (tiny)", "herd is ok"}},
		{"breaker open", func(t *testing.T) string {
			s := provisionedServer(t)
			freshWorker(t, s)
			putControl(t, s, control.BreakerKey("big"), control.Breaker{Model: "big", State: control.Open, Reason: "5 failures in a row"}.Marshal())
			return s.URL
		}, 1, []string{"WARN  breakers", "big (5 failures in a row)", "herd is degraded"}},
		{"no live worker", func(t *testing.T) string {
			s := provisionedServer(t)
			putControl(t, s, registry.Key("old"), registry.Registration{ID: "old", At: time.Now().Add(-time.Hour)}.Marshal())
			return s.URL
		}, 1, []string{"WARN  workers", "no live worker (1 stale)", "herd is degraded"}},
		{"nats unreachable", func(t *testing.T) string { return closedPort(t) }, 2, []string{"FAIL  nats", "unreachable", "herd is down"}},
		{"streams missing", func(t *testing.T) string { return natstest.Start(t).URL }, 2, []string{"FAIL  stream HERD_REQ", "missing", "herd is down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.setup(t)
			out, code := runCobra(t, t.Context(), newHealth, "--nats", url, "--timeout", "3s")
			if code != tc.code {
				t.Errorf("exit code %d, want %d\n%s", code, tc.code, out)
			}
			for _, want := range tc.lines {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestHealthJSON(t *testing.T) {
	s := provisionedServer(t)
	freshWorker(t, s)
	fake := ollamatest.New(t, ollamatest.WithModels("tiny", "big"))
	out, code := runCobra(t, t.Context(), newHealth, "--nats", s.URL, "--json", "--ollama", fake.URL)
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, out)
	}
	var r health.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if r.Status != health.OK || r.Snapshot == nil || len(r.Snapshot.Workers) != 1 {
		t.Fatalf("report %+v", r)
	}
	found := false
	for _, c := range r.Checks {
		if c.Name == "ollama "+fake.URL {
			found = c.Status == health.OK && strings.Contains(c.Detail, "big") && strings.Contains(c.Detail, "tiny")
		}
	}
	if !found {
		t.Errorf("no OK ollama check listing its models: %+v", r.Checks)
	}

	out, code = runCobra(t, t.Context(), newHealth, "--nats", closedPort(t), "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 2 || r.Status != health.Down {
		t.Fatalf("unreachable: code %d status %s err %v\n%s", code, r.Status, err, out)
	}
}

func TestStatusCommand(t *testing.T) {
	s := provisionedServer(t)
	freshWorker(t, s)
	putControl(t, s, control.BreakerKey("big"), control.Breaker{Model: "big", State: control.Open, Reason: "error rate"}.Marshal())
	out, code := runCobra(t, t.Context(), newStatus, "--nats", s.URL)
	if code != 1 {
		t.Errorf("exit code %d, want 1 (breaker open)", code)
	}
	for _, want := range []string{"herd degraded", "QUEUES", "high", "normal", "low", "BATCHES", "WORKERS", "w1", "tiny",
		"BREAKERS", "big", "open", "STORAGE", "herd_cache", "herd_results", "dead letters", "capture"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// --watch redraws until the context ends; a buffer is not a terminal,
	// so there are no ANSI codes. The context ends once the second summary
	// starts: a fixed 700ms was too short for two when a loaded machine
	// took over half a second for a snapshot.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	w := &drawCounter{want: 2, enough: cancel}
	cmd := newStatus()
	cmd.SetArgs([]string{"--nats", s.URL, "--watch", "--interval", "200ms"})
	cmd.SetOut(w)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Errorf("watch: %v (exit code %d)", err, exitCode(err))
	}
	out = w.String()
	if n := strings.Count(out, "QUEUES"); n < 2 {
		t.Errorf("watch drew %d summaries in 30s, want at least 2:\n%s", n, out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("watch wrote ANSI codes to a non-terminal")
	}

	if _, code := runCobra(t, t.Context(), newStatus, "--nats", closedPort(t)); code != 2 {
		t.Errorf("unreachable: exit code %d, want 2", code)
	}
}

// TestUsageExitCode: a usage or configuration error exits 64 (sysexits
// EX_USAGE), never 1 or 2, which herd health and status use for degraded
// and down: a typo in a monitoring script must not read as an outage.
func TestUsageExitCode(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	url := closedPort(t) // a reachable server must not matter
	for _, args := range [][]string{
		{"health", "--bogus"},
		{"health", "--nats", url, "--config", missing},
		{"health", "--nats", url, "extra"},
		{"health", "--nats", url, "--timeout", "0s"},
		{"status", "--bogus"},
		{"status", "--nats", url, "--config", missing},
		{"status", "--nats", url, "--interval", "0s"},
		{"ask", "--bogus", "hi"},
		{"testmodel", "--size", "huge"},
		{"no-such-command"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, code := runCobra(t, t.Context(), newRoot, args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d\n%s", code, exitUsage, out)
			}
		})
	}
	out, code := runCobra(t, t.Context(), newRoot, "health", "--help")
	if code != 0 || !strings.Contains(out, "64") {
		t.Errorf("health --help (exit %d) does not document exit code 64:\n%s", code, out)
	}
}
