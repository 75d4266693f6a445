package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sutazai/herd/internal/wire"
)

// Report is the outcome of a replay: what JSON carries and what the text
// and HTML renderings show. Latencies are in milliseconds, measured from
// each request's intended send time to its final reply; only answers
// (status below 400) count in the latency figures.
type Report struct {
	// Params are the run's settings.
	Params Params `json:"params"`
	// Started is when the run began (offset 0 of the schedule).
	Started time.Time `json:"started"`
	// Seconds runs from the start to the last send or final reply,
	// whichever is later; SendSeconds to the last send.
	Seconds     float64 `json:"seconds"`
	SendSeconds float64 `json:"send_seconds"`
	// Sent counts requests handed to JetStream; each ends as Answered (a
	// reply with status below 400), Errors (an error reply, or a publish
	// JetStream refused) or Lost (no final reply within the drain time).
	Sent     int64 `json:"sent"`
	Answered int64 `json:"answered"`
	Errors   int64 `json:"errors"`
	Lost     int64 `json:"lost"`
	// Duplicates counts final replies beyond the first for a request.
	Duplicates int64 `json:"duplicates"`
	// ErrorsByCode counts errors by herd's error code, or by a client-side
	// code: queue_full or publish_failed (the publish was refused),
	// duplicate_id (JetStream took the id for a repeat).
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	// Throughput is answers per second, from the start to the last final
	// reply.
	Throughput float64 `json:"throughput_per_second"`
	// CacheHits, CacheCoalesced and CacheMisses count answers by their
	// Herd-Cache header; CacheHitRate is (hits + coalesced) / answered.
	CacheHits      int64   `json:"cache_hits"`
	CacheCoalesced int64   `json:"cache_coalesced"`
	CacheMisses    int64   `json:"cache_misses"`
	CacheHitRate   float64 `json:"cache_hit_rate"`
	// Backlogged counts sends that had to wait for a free slot because
	// MaxInflight requests were outstanding (the client fell behind: its
	// wait is part of the measured latency); BacklogMaxMs is the longest
	// wait.
	Backlogged   int64   `json:"backlogged"`
	BacklogMaxMs float64 `json:"backlog_max_ms"`
	// SendLag is how late sends left compared with their intended time.
	SendLag Lag `json:"send_lag"`
	// Latency covers every answer; ByPriority and ByModel split it.
	Latency    *Summary            `json:"latency"`
	ByPriority map[string]*Summary `json:"by_priority"`
	ByModel    map[string]*Summary `json:"by_model"`
	// Series has one entry per second of the run.
	Series []Second `json:"series"`
	// Levels judge each priority against its service-level target (see
	// Judge).
	Levels []Level `json:"levels,omitempty"`
}

// Params are a run's settings, kept in its report.
type Params struct {
	RunID  string `json:"run_id"`
	Source string `json:"source"`
	Target string `json:"target,omitempty"`
	// Records is the number of records in the capture, Selected how many
	// passed the filter; CaptureSeconds is the time they span.
	Records        int     `json:"records"`
	Selected       int     `json:"selected"`
	CaptureSeconds float64 `json:"capture_seconds"`
	Speed          string  `json:"speed"`
	Duration       string  `json:"duration,omitempty"`
	Loop           bool    `json:"loop,omitempty"`
	Filter         string  `json:"filter,omitempty"`
	Seed           int64   `json:"seed"`
	MaxInflight    int     `json:"max_inflight"`
	Concurrency    int     `json:"concurrency,omitempty"`
	Drain          string  `json:"drain"`
}

// Summary holds the counts and latency percentiles of a set of requests.
type Summary struct {
	Sent           int64 `json:"sent"`
	Answered       int64 `json:"answered"`
	Errors         int64 `json:"errors"`
	Lost           int64 `json:"lost"`
	CacheHits      int64 `json:"cache_hits"`
	CacheCoalesced int64 `json:"cache_coalesced"`
	CacheMisses    int64 `json:"cache_misses"`

	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P95Ms  float64 `json:"p95_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// HDR is the latency histogram (microseconds) in the HdrHistogram V2
	// compressed, base64 encoding, so that percentiles can be recomputed
	// and plotted from the JSON alone.
	HDR string `json:"hdr,omitempty"`
}

// Lag summarises how late sends left, in milliseconds.
type Lag struct {
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Second is one second of the run: requests sent in it, final replies that
// arrived in it, and the latency percentiles of those answers.
type Second struct {
	T        int     `json:"t"`
	Sent     int64   `json:"sent"`
	Answered int64   `json:"answered"`
	Errors   int64   `json:"errors"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
}

// fill sets the latency figures and HDR from h.
func (s *Summary) fill(h *hdr.Histogram) {
	if h.TotalCount() == 0 {
		return
	}
	s.MeanMs = math.Round(h.Mean()) / 1000
	s.P50Ms = usToMs(h.ValueAtQuantile(50))
	s.P95Ms = usToMs(h.ValueAtQuantile(95))
	s.P99Ms = usToMs(h.ValueAtQuantile(99))
	s.P999Ms = usToMs(h.ValueAtQuantile(99.9))
	s.MaxMs = usToMs(h.Max())
	if b, err := h.Encode(hdr.V2CompressedEncodingCookieBase); err == nil {
		s.HDR = string(b)
	}
}

// Histogram decodes the summary's latency histogram (microseconds). It
// returns nil when the summary has none.
func (s *Summary) Histogram() *hdr.Histogram {
	if s == nil || s.HDR == "" {
		return nil
	}
	h, err := hdr.Decode([]byte(s.HDR))
	if err != nil {
		return nil
	}
	return h
}

// Point is one point of a percentile curve: the percentile (0 to 100) and
// the latency in milliseconds at it.
type Point struct {
	Percentile float64
	Ms         float64
}

// PercentileCurve returns the latency at percentiles spaced evenly on a
// log scale of 1/(1-p), from 0 to the last percentile the histogram can
// tell apart from its maximum; nil for an empty histogram.
func PercentileCurve(h *hdr.Histogram) []Point {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	n := float64(h.TotalCount())
	var pts []Point
	for i := 0; ; i++ {
		x := math.Pow(10, float64(i)/20) // 1/(1-p)
		p := 100 * (1 - 1/x)
		if x > n || i > 140 {
			pts = append(pts, Point{Percentile: 100 * (1 - 1/max(n, 1)), Ms: usToMs(h.Max())})
			return pts
		}
		pts = append(pts, Point{Percentile: p, Ms: usToMs(h.ValueAtQuantile(p))})
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport reads a JSON report written by WriteJSON. It returns an error
// wrapping ErrBadReport when the JSON is not a report.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReport, err)
	}
	if r.Latency == nil || r.Params.RunID == "" {
		return nil, fmt.Errorf("%w: no params or latency", ErrBadReport)
	}
	return &r, nil
}

// ReadReportFile reads a JSON report from a file.
func ReadReportFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ReadReport(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Priorities returns the report's priorities, highest first.
func (r *Report) Priorities() []string {
	var out []string
	for _, p := range wire.Priorities {
		if r.ByPriority[string(p)] != nil {
			out = append(out, string(p))
		}
	}
	for p := range r.ByPriority {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// Models returns the report's models in name order.
func (r *Report) Models() []string {
	out := make([]string, 0, len(r.ByModel))
	for m := range r.ByModel {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Codes returns the error codes in the report, most frequent first.
func (r *Report) Codes() []string {
	out := make([]string, 0, len(r.ErrorsByCode))
	for c := range r.ErrorsByCode {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b string) int {
		if d := r.ErrorsByCode[b] - r.ErrorsByCode[a]; d != 0 {
			return int(d)
		}
		return strings.Compare(a, b)
	})
	return out
}

// WriteText writes the report for a person to read.
func (r *Report) WriteText(w io.Writer) error {
	p := r.Params
	var b strings.Builder
	fmt.Fprintf(&b, "herd replay %s: %s, %d of %d records over %s, speed %s",
		p.RunID, p.Source, p.Selected, p.Records, secs(p.CaptureSeconds), p.Speed)
	if p.Loop {
		b.WriteString(", loop")
	}
	if p.Duration != "" {
		fmt.Fprintf(&b, ", duration %s", p.Duration)
	}
	if p.Filter != "" {
		fmt.Fprintf(&b, ", filter %s", p.Filter)
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "sent %d  answered %d  errors %d  lost %d  duplicates %d\n", r.Sent, r.Answered, r.Errors, r.Lost, r.Duplicates)
	fmt.Fprintf(&b, "ran %s (sending %s)  throughput %.1f/s  cache hit rate %.1f%% (hit %d, coalesced %d, miss %d)\n",
		secs(r.Seconds), secs(r.SendSeconds), r.Throughput, 100*r.CacheHitRate, r.CacheHits, r.CacheCoalesced, r.CacheMisses)
	fmt.Fprintf(&b, "send lag ms: mean %.2f  p50 %.2f  p99 %.2f  max %.2f   client backlog: %d sends waited (longest %.0f ms)\n",
		r.SendLag.MeanMs, r.SendLag.P50Ms, r.SendLag.P99Ms, r.SendLag.MaxMs, r.Backlogged, r.BacklogMaxMs)
	if len(r.ErrorsByCode) > 0 {
		b.WriteString("errors by code:")
		for _, c := range r.Codes() {
			fmt.Fprintf(&b, "  %s %d", c, r.ErrorsByCode[c])
		}
		b.WriteString("\n")
	}
	r.writeLevels(&b)
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tsent\tanswered\terrors\tlost\thit %\tp50 ms\tp95 ms\tp99 ms\tmax ms\t")
	row := func(name string, s *Summary) {
		hit := 0.0
		if s.Answered > 0 {
			hit = 100 * float64(s.CacheHits+s.CacheCoalesced) / float64(s.Answered)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t\n", name, s.Sent, s.Answered, s.Errors, s.Lost, hit,
			ms(s.P50Ms), ms(s.P95Ms), ms(s.P99Ms), ms(s.MaxMs))
	}
	if r.Latency != nil {
		row("all", r.Latency)
	}
	for _, p := range r.Priorities() {
		row("priority "+p, r.ByPriority[p])
	}
	for _, m := range r.Models() {
		row("model "+m, r.ByModel[m])
	}
	return tw.Flush()
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
