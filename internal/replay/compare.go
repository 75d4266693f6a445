package replay

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// Row is one line of a comparison: a figure of run A and of run B.
type Row struct {
	// Name says what the figure is ("sent", "p99 ms priority high").
	Name string
	A, B float64
	// Unit formats the figures: "" for counts, "ms", "/s" or "%".
	Unit string
}

// Ratio returns B/A, NaN when A is 0 (1 when both are).
func (r Row) Ratio() float64 {
	switch {
	case r.A == 0 && r.B == 0:
		return 1
	case r.A == 0:
		return math.NaN()
	}
	return r.B / r.A
}

// Compare lines up the figures of two reports: counts, throughput, cache
// hit rate, send lag and latency percentiles overall, per priority and
// per model (a priority or model that only one run has shows 0 for the
// other).
func Compare(a, b *Report) []Row {
	rows := []Row{
		{"sent", float64(a.Sent), float64(b.Sent), ""},
		{"answered", float64(a.Answered), float64(b.Answered), ""},
		{"errors", float64(a.Errors), float64(b.Errors), ""},
		{"lost", float64(a.Lost), float64(b.Lost), ""},
		{"duplicates", float64(a.Duplicates), float64(b.Duplicates), ""},
		{"throughput", a.Throughput, b.Throughput, "/s"},
		{"cache hit rate", 100 * a.CacheHitRate, 100 * b.CacheHitRate, "%"},
		{"client backlog", float64(a.Backlogged), float64(b.Backlogged), ""},
		{"send lag p99", a.SendLag.P99Ms, b.SendLag.P99Ms, "ms"},
	}
	lat := func(name string, x, y *Summary) {
		if x == nil {
			x = &Summary{}
		}
		if y == nil {
			y = &Summary{}
		}
		rows = append(rows,
			Row{"p50 " + name, x.P50Ms, y.P50Ms, "ms"},
			Row{"p95 " + name, x.P95Ms, y.P95Ms, "ms"},
			Row{"p99 " + name, x.P99Ms, y.P99Ms, "ms"},
			Row{"max " + name, x.MaxMs, y.MaxMs, "ms"},
		)
	}
	lat("all", a.Latency, b.Latency)
	for _, p := range union(a.Priorities(), b.Priorities()) {
		lat("priority "+p, a.ByPriority[p], b.ByPriority[p])
	}
	for _, m := range union(a.Models(), b.Models()) {
		lat("model "+m, a.ByModel[m], b.ByModel[m])
	}
	return rows
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			out = append(out, s)
		}
	}
	return out
}

// format writes v with its unit.
func format(v float64, unit string) string {
	switch unit {
	case "ms":
		return ms(v)
	case "/s":
		return fmt.Sprintf("%.1f/s", v)
	case "%":
		return fmt.Sprintf("%.1f%%", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func formatRatio(r float64) string {
	if math.IsNaN(r) {
		return "-"
	}
	if r != 0 && r < 0.1 {
		return strconv.FormatFloat(r, 'g', 2, 64)
	}
	return fmt.Sprintf("%.2f", r)
}

// WriteCompareText writes two reports side by side, named nameA and nameB,
// with the ratio B/A of each figure.
func WriteCompareText(w io.Writer, a, b *Report, nameA, nameB string) error {
	fmt.Fprintf(w, "A: %s (run %s, %s, speed %s)\nB: %s (run %s, %s, speed %s)\n\n",
		nameA, a.Params.RunID, a.Params.Source, a.Params.Speed, nameB, b.Params.RunID, b.Params.Source, b.Params.Speed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%s\t%s\tB/A\t\n", nameA, nameB)
	for _, r := range Compare(a, b) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.Name, format(r.A, r.Unit), format(r.B, r.Unit), formatRatio(r.Ratio()))
	}
	return tw.Flush()
}
