package modelbench

import (
	"errors"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[99-i] = float64(i + 1) // 100 down to 1: input order must not matter
	}
	tests := []struct {
		name string
		in   []float64
		want Latency
	}{
		{"none", nil, Latency{}},
		{"one", []float64{7}, Latency{P50: 7, P95: 7, P99: 7, Max: 7, Mean: 7}},
		{"1..100", hundred, Latency{P50: 50, P95: 95, P99: 99, Max: 100, Mean: 50.5}},
		{"outlier", []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 91}, Latency{P50: 1, P95: 91, P99: 91, Max: 91, Mean: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentiles(tt.in); got != tt.want {
				t.Fatalf("Percentiles = %+v, want %+v", got, tt.want)
			}
		})
	}
	if hundred[0] != 100 {
		t.Error("Percentiles sorted its input")
	}
}

func TestSummarize(t *testing.T) {
	samples := []Sample{
		{LatencyMs: 10, EvalCount: 10, EvalMs: 100, PromptEvalCount: 5, PromptEvalMs: 10, LoadMs: 300, QueueMs: 2},
		{LatencyMs: 30, EvalCount: 30, EvalMs: 100, PromptEvalCount: 5, PromptEvalMs: 10, LoadMs: 1, QueueMs: 4},
		{LatencyMs: 1, Code: "queue_full", Error: "full"},
		{LatencyMs: 2, Code: "queue_full", Error: "still full"},
	}
	f := Summarize(samples, 2*time.Second)
	if f.OK != 2 || f.Errors["queue_full"] != 2 || f.ErrorExamples["queue_full"] != "full" || f.ErrorRate != 0.5 {
		t.Errorf("ok %d, errors %v %v, rate %v", f.OK, f.Errors, f.ErrorExamples, f.ErrorRate)
	}
	if f.Latency.P50 != 10 || f.Latency.Max != 30 {
		t.Errorf("latency %+v, want the answered requests' only", f.Latency)
	}
	if f.Throughput != 1 || f.TokensPerSec != 200 || f.PromptTokensPerSec != 500 || f.EvalTokens != 40 ||
		f.LoadMaxMs != 300 || f.QueueMeanMs != 3 {
		t.Errorf("figures %+v; want 1 req/s, 200 tok/s, 500 prompt tok/s, 40 tokens, load max 300, queue 3", f)
	}
	if z := Summarize(nil, 0); z.ErrorRate != 0 || z.Throughput != 0 || z.TokensPerSec != 0 {
		t.Errorf("no samples: %+v, want zeros", z)
	}
}

func TestCompare(t *testing.T) {
	prev := &Result{ID: "a", Model: "m", Profile: "quick", Digest: "d1",
		Figures: Figures{Latency: Latency{P50: 100, P95: 200, P99: 300, Max: 400}, Throughput: 10, TokensPerSec: 100, ErrorRate: 0.1},
		Quality: &Quality{Cases: 4, PassRate: 0.5}}
	cur := &Result{ID: "b", Model: "m", Profile: "quick", Digest: "d2", LoadFirstMs: 50,
		Figures: Figures{Latency: Latency{P50: 100, P95: 224, P99: 150, Max: 400}, Throughput: 12, TokensPerSec: 97, ErrorRate: 0.05},
		Quality: &Quality{Cases: 4, PassRate: 0.75}}
	c := Compare(prev, cur)
	if c.PreviousID != "a" || !c.DigestChanged {
		t.Errorf("comparison %+v, want previous a and the digest change", c)
	}
	got := map[string]string{}
	worse := map[string]bool{}
	for _, d := range c.Deltas {
		got[d.Name], worse[d.Name] = d.String(), d.Worse
	}
	want := map[string]string{
		"p50": "p50 +0%", "p95": "p95 +12%", "p99": "p99 -50%", "max": "max +0%",
		"req/s": "req/s +20%", "tok/s": "tok/s -3%", "errors": "errors -5.0pp", "quality": "quality +25.0pp",
	}
	if len(got) != len(want) {
		t.Errorf("deltas %v, want %v (no load: it was 0 before)", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("delta %s = %q, want %q", k, got[k], w)
		}
	}
	if !worse["p95"] || !worse["tok/s"] || worse["p99"] || worse["req/s"] || worse["errors"] || worse["quality"] {
		t.Errorf("worse %v; want p95 and tok/s only", worse)
	}
}

func TestProfileByName(t *testing.T) {
	tests := []struct {
		name      string
		req, conc int
		want      Profile
		err       bool
	}{
		{"quick", 0, 0, Quick, false},
		{"standard", 0, 0, Standard, false},
		{"comprehensive", 0, 0, Profile{"comprehensive", 500, 20}, false},
		{"quick", 20, 5, Quick, false},
		{"quick", 50, 0, Profile{"custom-50x5", 50, 5}, false},
		{"standard", 0, 1, Profile{"custom-100x1", 100, 1}, false},
		{"huge", 0, 0, Profile{}, true},
		{"quick", -1, 0, Profile{}, true},
	}
	for _, tt := range tests {
		got, err := ProfileByName(tt.name, tt.req, tt.conc)
		if (err != nil) != tt.err || got != tt.want || (err != nil && !errors.Is(err, ErrProfile)) {
			t.Errorf("ProfileByName(%q, %d, %d) = %+v, %v; want %+v", tt.name, tt.req, tt.conc, got, err, tt.want)
		}
	}
}
