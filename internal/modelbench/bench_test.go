package modelbench

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/ollamatest"
)

// startFake starts herd in front of the fake Ollama (models tiny, small,
// big; answers "echo: <prompt>") with a little latency per call.
func startFake(t *testing.T) (*testHerd, *ollamatest.Server) {
	t.Helper()
	fake := ollamatest.New(t, ollamatest.WithLatency(2*time.Millisecond))
	return startHerd(t, fake.URL, nil), fake
}

// TestQuickProfile: the quick profile sends 20 measured requests (plus the
// first call) through herd, every one reaching Ollama although they repeat
// (cache off), and reports ordered percentiles, no errors, the fake's decode
// rate and load time.
func TestQuickProfile(t *testing.T) {
	h, fake := startFake(t)
	r, err := h.runner.Bench(t.Context(), "tiny", Config{Profile: Quick})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Samples) != 20 || r.OK != 20 || r.Requests != 20 || r.Concurrency != 5 {
		t.Fatalf("%d samples, %d answered, profile %d×%d; want 20 answered of quick (20×5)", len(r.Samples), r.OK, r.Requests, r.Concurrency)
	}
	if r.ErrorRate != 0 || len(r.Errors) != 0 || r.FirstError != "" {
		t.Errorf("error rate %v, errors %v, first %q; want none", r.ErrorRate, r.Errors, r.FirstError)
	}
	if got := fake.CallsFor("generate", "tiny"); got != 21 {
		t.Errorf("Ollama ran %d generate calls, want 21 (first call + 20): the cache must be off", got)
	}
	l := r.Latency
	if !(l.P50 >= 2 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latency %+v; want 2ms (the fake's latency) <= p50 <= p95 <= p99 <= max", l)
	}
	if r.Throughput <= 0 || r.WallMs <= 0 {
		t.Errorf("throughput %.1f req/s over %.1fms, want > 0", r.Throughput, r.WallMs)
	}
	// The fake reports 1ms per generated token and a 1ms load.
	if r.TokensPerSec < 999 || r.TokensPerSec > 1001 || r.EvalTokens == 0 {
		t.Errorf("tokens/s %.1f over %d tokens, want the fake's 1000", r.TokensPerSec, r.EvalTokens)
	}
	if r.LoadFirstMs != 1 || r.LoadMaxMs != 1 {
		t.Errorf("load first %.1fms, max %.1fms; want the fake's 1ms", r.LoadFirstMs, r.LoadMaxMs)
	}
}

// TestErrorsByCode: when Ollama refuses every call with 400, every request
// fails and the report counts them under herd's code with the message.
func TestErrorsByCode(t *testing.T) {
	h, fake := startFake(t)
	fake.SetFailure("tiny", 400, "bad options for this model")
	rep, err := h.runner.Run(t.Context(), Options{Config: Config{Profile: Quick}, Models: []string{"tiny"}})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.OK != 0 || r.Errors["invalid_request"] != 20 || len(r.Errors) != 1 || r.ErrorRate != 1 {
		t.Fatalf("answered %d, errors %v, rate %v; want 20 invalid_request, rate 1", r.OK, r.Errors, r.ErrorRate)
	}
	if !strings.HasPrefix(r.FirstError, "invalid_request") {
		t.Errorf("first call error %q, want invalid_request", r.FirstError)
	}
	var out bytes.Buffer
	if err := WriteReport(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"100%", "tiny errors:", "invalid_request", "  20  ", "bad options for this model"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestQualitySuite: substring, regular expression and JSON checks pass and
// fail as the fake's deterministic "echo: <prompt>" answers say.
func TestQualitySuite(t *testing.T) {
	h, _ := startFake(t)
	suite, err := ParseSuite([]byte(`
load:
  prompts: [hello]
cases:
  - {name: contains-pass, prompt: "hello world", expect: {contains: ["echo: hello world"]}}
  - {name: contains-fail, prompt: "hello world", expect: {contains: [goodbye]}}
  - {name: not-contains-fail, prompt: "hello world", expect: {not_contains: [world]}}
  - {name: ignore-case-pass, prompt: "Hello World", expect: {contains: ["HELLO"], ignore_case: true}}
  - {name: regex-pass, prompt: "3 apples", expect: {regex: ['^echo: \d+ apples$']}}
  - {name: regex-fail, prompt: "three apples", expect: {regex: ['^echo: \d+ apples$']}}
  - name: json-fail
    prompt: '{"a": 1}'
    format: json
    expect: {json_valid: true}
  - name: chat-pass
    messages: [{role: user, content: ping}]
    expect: {contains: ["echo: ping"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.runner.Bench(t.Context(), "tiny", Config{Profile: Profile{Name: "tiny", Requests: 2, Concurrency: 2}, Suite: suite})
	if err != nil {
		t.Fatal(err)
	}
	q := r.Quality
	failed := map[string]Failure{}
	for _, f := range q.Failures {
		failed[f.Case] = f
	}
	if q.Cases != 8 || q.Passed != 4 || q.PassRate != 0.5 || len(failed) != 4 {
		t.Fatalf("quality %d/%d (%.2f), failures %+v; want 4/8", q.Passed, q.Cases, q.PassRate, q.Failures)
	}
	want := map[string]string{
		"contains-fail":     `missing "goodbye"`,
		"not-contains-fail": `contains "world"`,
		"regex-fail":        `no match for /^echo: \d+ apples$/`,
		"json-fail":         "not valid JSON",
	}
	for name, reason := range want {
		f, ok := failed[name]
		if !ok || len(f.Reasons) != 1 || !strings.HasPrefix(f.Reasons[0], reason) || !strings.HasPrefix(f.Answer, "echo: ") {
			t.Errorf("case %s: failure %+v, want one reason %q and the answer", name, f, reason)
		}
	}
}

// TestCompareAndHistory: every model the workers registered is benchmarked;
// a second run prints its changes against the first, and history lists
// both runs of a model.
func TestCompareAndHistory(t *testing.T) {
	h, _ := startFake(t)
	st := h.store(t)
	o := Options{Config: Config{Profile: Quick}, Store: st}

	first, err := h.runner.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := models(first); got != "big small tiny" {
		t.Fatalf("benchmarked %q, want every registered model: big small tiny", got)
	}
	if len(first.Comparisons) != 0 {
		t.Fatalf("first run compared with %+v, want nothing to compare with", first.Comparisons)
	}
	if first.Results[0].Digest != ollamatest.Digest("big") {
		t.Errorf("digest %q, want the registered one", first.Results[0].Digest)
	}

	second, err := h.runner.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Comparisons) != 3 {
		t.Fatalf("%d comparisons, want one per model", len(second.Comparisons))
	}
	c := second.Comparisons[2]
	if c.Model != "tiny" || c.PreviousID != first.Results[2].ID || c.DigestChanged {
		t.Errorf("comparison %+v, want tiny against the first run %s", c, first.Results[2].ID)
	}
	var out bytes.Buffer
	if err := WriteReport(&out, second); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tiny vs previous quick run", "p50 ", "p95 ", "tok/s ", "req/s ", "errors +0.0pp"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("second report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("second run:\n%s", out.String())

	runs, err := st.History(t.Context(), "tiny", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].ID != first.Results[0].ID || runs[1].ID != second.Results[0].ID {
		t.Fatalf("history of tiny: %d runs, want the first and the second", len(runs))
	}
	if runs[0].Samples != nil || runs[0].OK != 20 {
		t.Errorf("stored run: %d samples, %d answered; want figures without samples", len(runs[0].Samples), runs[0].OK)
	}
	out.Reset()
	if err := WriteHistory(&out, runs); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 3 || strings.Count(out.String(), " tiny ") != 2 {
		t.Errorf("history table has %d lines, want a header and 2 runs of tiny:\n%s", lines, out.String())
	}
	if all, err := st.History(t.Context(), "", "", 0); err != nil || len(all) != 6 {
		t.Errorf("history of every model: %d runs, %v; want 6", len(all), err)
	}
	if last, err := st.History(t.Context(), "tiny", Quick.Name, 1); err != nil || len(last) != 1 || last[0].ID != second.Results[0].ID {
		t.Errorf("history --limit 1: %+v, %v; want the second run", last, err)
	}
	if none, err := st.History(t.Context(), "tiny", Standard.Name, 0); err != nil || len(none) != 0 {
		t.Errorf("history of an unrun profile: %d runs, %v; want none", len(none), err)
	}

	// A run of another profile is not compared with the quick runs.
	o.Profile, o.Models = Profile{Name: "custom-5x1", Requests: 5, Concurrency: 1}, []string{"tiny"}
	third, err := h.runner.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(third.Comparisons) != 0 {
		t.Errorf("a custom-5x1 run compared with %+v, want no earlier run of that profile", third.Comparisons)
	}
}

func models(rep *Report) string {
	var names []string
	for _, r := range rep.Results {
		names = append(names, r.Model)
	}
	return strings.Join(names, " ")
}

// TestProgressDuringRun: herd bench draws progress lines while a model's
// requests run, not only its start and end lines (issue 16, item 10):
// against a fake Ollama taking 20ms a call, 40 requests 2 at a time run
// for about 400ms and lines every 25ms show requests done before the end.
func TestProgressDuringRun(t *testing.T) {
	fake := ollamatest.New(t, ollamatest.WithLatency(20*time.Millisecond))
	h := startHerd(t, fake.URL, nil)
	h.runner.progressEvery = 25 * time.Millisecond
	var out bytes.Buffer
	p := Profile{Name: "custom-40x2", Requests: 40, Concurrency: 2}
	rep, err := h.runner.Run(t.Context(), Options{Config: Config{Profile: p}, Models: []string{"tiny"}, Progress: &out})
	if err != nil || len(rep.Results) != 1 || rep.Results[0].OK != 40 {
		t.Fatalf("run: %v, %+v", err, rep)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "bench tiny: custom-40x2, 40 requests") || !strings.HasPrefix(lines[len(lines)-1], "bench tiny: 40/40 answered") {
		t.Fatalf("progress output:\n%s\nwant a start line, progress lines and an end line", out.String())
	}
	midway := 0
	for _, l := range lines[1 : len(lines)-1] {
		var el float64
		var done, total, errs, inflight int
		var rate float64
		if _, err := fmt.Sscanf(strings.TrimPrefix(l, "bench tiny: "), "%fs requests %d/%d  errors %d  in flight %d  %f/s", &el, &done, &total, &errs, &inflight, &rate); err != nil {
			continue // the first call's or quality lines
		}
		if total != 40 || errs != 0 || inflight > 2 {
			t.Errorf("progress line %q: want n/40, no errors, at most 2 in flight", l)
		}
		if done > 0 && done < 40 {
			midway++
		}
	}
	if midway < 2 {
		t.Errorf("%d progress lines with requests done midway, want several:\n%s", midway, out.String())
	}
}
