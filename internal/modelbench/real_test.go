package modelbench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sutazai/herd/internal/worker"
)

// TestRealOllama benchmarks herd-tiny on the real pinned Ollama through herd
// with the quick profile and the shipped prompt suite: every request is
// answered, Ollama's decode rate and load time are reported, and the
// mechanical JSON cases pass even on a model with random weights.
func TestRealOllama(t *testing.T) {
	inst := startRealOllama(t)
	h := startHerd(t, inst.URL(), func(c *worker.Config) {
		c.CPUBudget = 1
		c.NumCtx = map[string]int{"herd-tiny": 2048}
	})
	suite, err := LoadSuite("../../config/prompts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := h.runner.Run(t.Context(), Options{
		Config: Config{Profile: Quick, Suite: suite},
		Models: []string{"herd-tiny"},
		Store:  h.store(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteReport(&out, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("herd bench --model herd-tiny:\n%s", out.String())
	r := rep.Results[0]
	if r.OK != Quick.Requests || r.ErrorRate != 0 {
		t.Fatalf("%d of %d answered, errors %v; want all", r.OK, Quick.Requests, r.Errors)
	}
	if r.TokensPerSec <= 0 || r.EvalTokens <= 0 {
		t.Errorf("tokens/s %.1f over %d tokens, want > 0", r.TokensPerSec, r.EvalTokens)
	}
	if r.LoadFirstMs <= 0 || r.LoadMaxMs < r.LoadFirstMs {
		t.Errorf("load first %.1fms, max %.1fms; want the first call's load time reported", r.LoadFirstMs, r.LoadMaxMs)
	}
	if r.Throughput <= 0 || !(r.Latency.P50 > 0 && r.Latency.P50 <= r.Latency.P95 && r.Latency.P95 <= r.Latency.P99 && r.Latency.P99 <= r.Latency.Max) {
		t.Errorf("throughput %.1f, latency %+v; want positive and ordered", r.Throughput, r.Latency)
	}
	for _, f := range r.Quality.Failures {
		if strings.HasPrefix(f.Case, "json-schema-") {
			t.Errorf("mechanical case %s failed on herd-tiny: %v, answer %q", f.Case, f.Reasons, f.Answer)
		}
	}
}
