package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/wire"
)

// sampleReport builds a report of n requests whose latencies grow with
// scale, over a few seconds, for two priorities and two models.
func sampleReport(runID string, n int, scale float64) *Report {
	c := NewCollector(t0)
	recs := []struct {
		p     wire.Priority
		model string
	}{{wire.High, "tiny"}, {wire.Low, "llama3.2:3b"}}
	for i := range n {
		r := rec(0, "a", recs[i%2].p, recs[i%2].model)
		due := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		c.Sent(i, &r, due, due.Add(100*time.Microsecond))
		lat := time.Duration(scale * float64(time.Millisecond) * float64(5+i%17))
		switch {
		case i%23 == 22:
			c.Final(i, due.Add(lat), 503, string(wire.CodeBreakerOpen), "")
		case i%5 == 0:
			c.Final(i, due.Add(lat), 200, "", wire.CacheHit)
		default:
			c.Final(i, due.Add(lat), 200, "", wire.CacheMiss)
		}
	}
	rep := c.Report(t0.Add(time.Duration(n) * 20 * time.Millisecond))
	rep.Params = Params{RunID: runID, Source: "file traffic.jsonl", Target: "nats://127.0.0.1:4222", Records: n, Selected: n,
		CaptureSeconds: float64(n) / 50, Speed: "1x", Seed: 1, MaxInflight: 10000, Drain: "1m0s"}
	return rep
}

func TestReportJSONRoundTrip(t *testing.T) {
	rep := sampleReport("run-a", 200, 1)
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := back.WriteJSON(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != b.String() {
		t.Fatalf("JSON changed on a round trip:\n%s\n---\n%s", b.String(), again.String())
	}
	// The histograms travel with the report: percentiles recomputed from
	// them agree with the figures.
	h := back.ByPriority["high"].Histogram()
	if h == nil || float64(h.ValueAtQuantile(99))/1000 != back.ByPriority["high"].P99Ms || h.TotalCount() != back.ByPriority["high"].Answered {
		t.Fatalf("high histogram %v does not match %+v", h, back.ByPriority["high"])
	}
	if len(back.Series) != 4 || back.ErrorsByCode["breaker_open"] == 0 {
		t.Fatalf("series %d seconds, errors %v", len(back.Series), back.ErrorsByCode)
	}
	if _, err := ReadReport(strings.NewReader(`{"sent": 1}`)); !errors.Is(err, ErrBadReport) {
		t.Fatalf("a JSON object that is not a report: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil || m["by_model"] == nil || m["series"] == nil {
		t.Fatalf("JSON fields: %v", err)
	}
}

func TestReportText(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport("run-a", 200, 1).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"sent 200", "lost 0", "duplicates 0", "errors by code:  breaker_open 8", "cache hit rate",
		"priority high", "priority low", "model llama3.2:3b", "model tiny", "p99"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestReportHTML(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport("run-<a>", 200, 1).WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	checkSelfContained(t, page)
	for _, want := range []string{"latency over time", "latency by percentile", "requests per second", "99.9%",
		"priority high", "model llama3.2:3b", "run-&lt;a&gt;", "nats://127.0.0.1:4222", "<path d=\"M"} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if n := strings.Count(page, "<svg "); n != 3 {
		t.Errorf("HTML has %d SVG plots, want 3", n)
	}
}

// checkSelfContained fails when page loads anything from elsewhere.
func checkSelfContained(t *testing.T, page string) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(page, "</html>\n") {
		t.Error("not a whole HTML page")
	}
	for _, bad := range []string{"http://", "https://", "<script", "<link", "src=", "url(", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("HTML contains %q", bad)
		}
	}
}

func TestCompare(t *testing.T) {
	a, b := sampleReport("run-a", 200, 1), sampleReport("run-b", 100, 2)
	rows := Compare(a, b)
	var p99 Row
	for _, r := range rows {
		if r.Name == "p99 all" {
			p99 = r
		}
	}
	if p99.A == 0 || p99.Ratio() < 1.9 || p99.Ratio() > 2.1 {
		t.Fatalf("p99 row %+v, ratio %v; want about 2", p99, p99.Ratio())
	}
	var out bytes.Buffer
	if err := WriteCompareText(&out, a, b, "before", "after"); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	lines := strings.Split(text, "\n")
	var header, sent string
	for _, l := range lines {
		switch f := strings.Fields(l); {
		case len(f) == 3 && f[0] == "before" && f[1] == "after" && f[2] == "B/A":
			header = l
		case len(f) > 0 && f[0] == "sent":
			sent = l
		}
	}
	if header == "" || strings.Join(strings.Fields(sent), " ") != "sent 200 100 0.50" {
		t.Fatalf("comparison lacks the columns or the sent row:\n%s", text)
	}
	for _, want := range []string{"p99 priority high", "p99 model tiny", "cache hit rate"} {
		if !strings.Contains(text, want) {
			t.Errorf("comparison lacks %q", want)
		}
	}
	out.Reset()
	if err := WriteCompareHTML(&out, a, b, "before", "after"); err != nil {
		t.Fatal(err)
	}
	page := out.String()
	checkSelfContained(t, page)
	for _, want := range []string{"A: before", "B: after", "run-a", "run-b", "latency by percentile", "A before", "B after"} {
		if !strings.Contains(page, want) {
			t.Errorf("comparison HTML lacks %q", want)
		}
	}
	if n := strings.Count(page, "<svg "); n != 2 {
		t.Errorf("comparison HTML has %d plots, want 2", n)
	}
}

func TestProgressLine(t *testing.T) {
	c := Counts{Sent: 50, Answered: 40, Errors: 2, Inflight: 8}
	plain := &Progress{total: 200}
	if got := plain.Line(1500*time.Millisecond, "sending", c); got != "   1.5s sending  sent 50/200  answered 40  errors 2  in flight 8" {
		t.Fatalf("plain line %q", got)
	}
	tty := &Progress{total: 200, tty: true}
	if got := tty.Line(time.Second, "sending", c); !strings.HasPrefix(got, "[======                  ]  25% ") {
		t.Fatalf("terminal line %q", got)
	}
	c.Backlogged = 3
	if got := (&Progress{total: -1}).Line(time.Second, "draining", c); !strings.Contains(got, "sent 50  answered") || !strings.HasSuffix(got, "backlog 3") {
		t.Fatalf("unbounded line %q", got)
	}
	var b bytes.Buffer
	if p := NewProgress(&b, 10); p.tty || p.every != time.Second {
		t.Fatalf("a buffer is not a terminal: %+v", p)
	}
}
