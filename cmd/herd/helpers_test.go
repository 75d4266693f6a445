package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/provision"
)

// herd runs the command line with args and stdin and returns its stdout,
// stderr and error.
func herd(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRoot()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// mustHerd runs the command line and fails the test on an error.
func mustHerd(t *testing.T, args ...string) (string, string) {
	t.Helper()
	out, errOut, err := herd(t, "", args...)
	if err != nil {
		t.Fatalf("herd %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out, errOut
}

// provisioned starts an in-process server with herd's streams.
func provisioned(t *testing.T) *natstest.Server {
	t.Helper()
	s := natstest.Start(t)
	s.Provision(t, provision.Overrides{})
	return s
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadgenFile writes a loadgen capture (fixed start and seed) and returns
// its path.
func loadgenFile(t *testing.T, args ...string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "gen.jsonl")
	mustHerd(t, append([]string{"loadgen", "--start", "2026-03-01T12:00:00Z", "--seed", "9", "--out", name}, args...)...)
	return name
}
