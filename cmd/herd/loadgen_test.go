package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/loadgen"
)

func TestLoadgenCommand(t *testing.T) {
	// The same seed and start give the same file; another seed another.
	a := readFile(t, loadgenFile(t, "--duration", "20s"))
	b := readFile(t, loadgenFile(t, "--duration", "20s"))
	c := readFile(t, loadgenFile(t, "--duration", "20s", "--seed", "10"))
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatal("loadgen output does not follow the seed")
	}

	// --print-profile prints the default fleet in the file format.
	out, _ := mustHerd(t, "loadgen", "--print-profile")
	f, err := loadgen.Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, loadgen.DefaultFleet()) {
		t.Fatalf("--print-profile printed another fleet:\n%s", out)
	}

	// A user's profile, with its models mapped and a repeat ratio of 0.
	dir := t.TempDir()
	profile := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(profile, []byte(`
profiles:
  - name: bots
    agents: 4
    rate: 5
    priorities: {high: 1}
    models: {"llama3.2:3b": 1, "qwen3:4b": 1}
    prompt_words: {median: 6}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut := mustHerd(t, "loadgen", "--profile", profile, "--models", "herd-tiny", "--repeat-ratio", "0", "--duration", "10s", "--out", "-")
	if !strings.Contains(errOut, "from 4 agents in 1 profiles (4 consumers) over 10s to stdout: high 100%, normal 0%, low 0%, repeats 0%") {
		t.Fatalf("summary %q", errOut)
	}
	out, _ = mustHerd(t, "loadgen", "--profile", profile, "--models", "herd-tiny", "--duration", "10s", "--out", "-")
	n := 0
	err = capture.ReadJSONL(strings.NewReader(out), func(r capture.Record) error {
		n++
		if r.Model != "herd-tiny" || !strings.HasPrefix(r.Agent, "bots-0") || r.Priority != "high" {
			t.Fatalf("record %+v", r)
		}
		return nil
	})
	if err != nil || n < 100 {
		t.Fatalf("%d records, %v", n, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"loadgen"}, "give one of --out FILE and --stream"},
		{[]string{"loadgen", "--out", "x", "--stream"}, "give one of --out FILE and --stream"},
		{[]string{"loadgen", "--out", "-", "--duration", "0s"}, "duration"},
		{[]string{"loadgen", "--out", "-", "--rate-scale", "-1"}, "rate scale"},
		{[]string{"loadgen", "--out", "-", "--repeat-ratio", "1.5"}, "repeat_ratio"},
		{[]string{"loadgen", "--out", "-", "--models", "nope=herd-tiny"}, "no profile uses"},
		{[]string{"loadgen", "--out", "-", "--start", "today"}, "RFC 3339"},
		{[]string{"loadgen", "--out", "-", "--profile", filepath.Join(dir, "missing.yaml")}, "no such file"},
	} {
		_, _, err := herd(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("herd %v: err = %v (exit %d), want exit 2 with %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}
