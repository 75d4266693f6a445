package modelbench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// failuresShown is how many quality failures per model the text report
// lists; --json has them all.
const failuresShown = 10

// WriteReport prints rep as text: a table with one row per model, then the
// errors by code, the quality failures and the changes since each model's
// previous run.
func WriteReport(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tPROFILE\tREQS\tOK\tERR\tP50\tP95\tP99\tMAX\tREQ/S\tTOK/S\tLOAD first/max\tQUALITY")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t%s/%s\t%s\n",
			r.Model, r.Profile, r.Requests, r.OK, pct(r.ErrorRate),
			fmtMs(r.Latency.P50), fmtMs(r.Latency.P95), fmtMs(r.Latency.P99), fmtMs(r.Latency.Max),
			r.Throughput, r.TokensPerSec, fmtMs(r.LoadFirstMs), fmtMs(r.LoadMaxMs), quality(r.Quality))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range rep.Results {
		if r.FirstError != "" {
			fmt.Fprintf(&b, "\n%s: first call failed: %s\n", r.Model, r.FirstError)
		}
		if len(r.Errors) > 0 {
			fmt.Fprintf(&b, "\n%s errors:\n", r.Model)
			for _, code := range slices.Sorted(maps.Keys(r.Errors)) {
				fmt.Fprintf(&b, "  %-20s %4d  %s\n", code, r.Errors[code], shorten(r.ErrorExamples[code], 100))
			}
		}
		if r.Quality != nil && len(r.Quality.Failures) > 0 {
			fmt.Fprintf(&b, "\n%s quality failures (%d of %d cases):\n", r.Model, len(r.Quality.Failures), r.Quality.Cases)
			for i, f := range r.Quality.Failures {
				if i == failuresShown {
					fmt.Fprintf(&b, "  ... and %d more (--json lists them all)\n", len(r.Quality.Failures)-i)
					break
				}
				fmt.Fprintf(&b, "  %s: %s\n    answer: %q\n", f.Case, strings.Join(f.Reasons, "; "), f.Answer)
			}
		}
	}
	for _, c := range rep.Comparisons {
		fmt.Fprintf(&b, "\n%s vs previous %s run %s (%s ago):", c.Model, c.Profile, c.PreviousTime.Local().Format(time.DateTime),
			time.Since(c.PreviousTime).Round(time.Second))
		if c.DigestChanged {
			b.WriteString(" [model digest changed]")
		}
		b.WriteString("\n ")
		for _, d := range c.Deltas {
			b.WriteString(" " + d.String())
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteHistory prints stored runs as a table, one row each.
func WriteHistory(w io.Writer, runs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tRUN\tMODEL\tPROFILE\tREQS\tERR\tP50\tP95\tP99\tREQ/S\tTOK/S\tLOAD\tQUALITY")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.1f\t%.0f\t%s\t%s\n",
			r.Time.Local().Format(time.DateTime), r.ID, r.Model, r.Profile, r.Requests, pct(r.ErrorRate),
			fmtMs(r.Latency.P50), fmtMs(r.Latency.P95), fmtMs(r.Latency.P99),
			r.Throughput, r.TokensPerSec, fmtMs(r.LoadFirstMs), quality(r.Quality))
	}
	return tw.Flush()
}

func quality(q *Quality) string {
	if q == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d (%s)", q.Passed, q.Cases, pct(q.PassRate))
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

// fmtMs formats milliseconds for a table: 0.4ms, 87ms, 1.25s.
func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.1fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.2fs", v/1000)
}
