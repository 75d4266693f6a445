package optimizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/modelbench"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
)

// benchErrorLimit is the bench error rate above which a model is
// recommended for a look before it takes traffic.
const benchErrorLimit = 0.05

// BenchReport is the benchmark part of a one-shot report: each model's
// latest `herd bench` run from HERD_BENCH, set against its previous run.
type BenchReport struct {
	Rows            []BenchRow       `json:"rows"`
	Recommendations []Recommendation `json:"-"`
}

// BenchRow is one model's latest run.
type BenchRow struct {
	Model   string    `json:"model"`
	Profile string    `json:"profile"`
	RunID   string    `json:"run_id"`
	Time    time.Time `json:"time"`
	// Runs counts the model's stored runs.
	Runs         int     `json:"runs"`
	OK           int     `json:"ok"`
	ErrorRate    float64 `json:"error_rate"`
	P50Ms        float64 `json:"p50_ms"`
	P95Ms        float64 `json:"p95_ms"`
	Throughput   float64 `json:"throughput_rps"`
	TokensPerSec float64 `json:"tokens_per_s"`
	// PassRate is the quality pass rate; -1 without quality cases.
	PassRate float64 `json:"pass_rate"`
	// Changes are the figures that moved since the previous run of the
	// same profile (by 1% or 0.1 points or more).
	Changes []string `json:"changes,omitempty"`
}

// ReadBenchReport reads the stored bench runs and recommends on them with
// auto's profiles: a model with bench errors is to be looked at, and a
// profile whose first model is not its best benchmarked one (the most
// tokens per second for high-throughput, else the best quality) could list
// the best first.
func ReadBenchReport(ctx context.Context, js jetstream.JetStream, auto policy.AutoConfig) (*BenchReport, error) {
	r := &BenchReport{Rows: []BenchRow{}}
	if _, err := js.Stream(ctx, wire.StreamBench); errors.Is(err, jetstream.ErrStreamNotFound) {
		return r, nil
	} else if err != nil {
		return nil, fmt.Errorf("stream %s: %w", wire.StreamBench, err)
	}
	st, err := modelbench.OpenStore(ctx, js)
	if err != nil {
		return nil, err
	}
	runs, err := st.History(ctx, "", "", 0)
	if err != nil {
		return nil, err
	}
	h := latestRuns(runs)
	rows := map[string]BenchRow{}
	for _, m := range h.models() {
		row := h.row(m)
		r.Rows = append(r.Rows, row)
		rows[m] = row
		r.Recommendations = append(r.Recommendations, modelHealth(h.latest[m], row))
	}
	for _, p := range auto.Profiles {
		if rec, ok := profileOrder(p, rows); ok {
			r.Recommendations = append(r.Recommendations, rec)
		}
	}
	return r, nil
}

// benchHistory is each model's latest run, the run of the same profile
// before it, and how many runs the model has.
type benchHistory struct {
	latest map[string]*modelbench.Result
	prev   map[string]*modelbench.Result
	count  map[string]int
}

// latestRuns sorts the stored runs into a benchHistory.
func latestRuns(runs []modelbench.Result) benchHistory {
	// The latest run of each model, and the last two of each model and
	// profile: a run is compared with the previous one of its profile.
	type modelProfile struct{ model, profile string }
	latest := map[string]*modelbench.Result{}
	last, before := map[modelProfile]*modelbench.Result{}, map[modelProfile]*modelbench.Result{}
	count := map[string]int{}
	for i := range runs {
		x := &runs[i]
		count[x.Model]++
		if l := latest[x.Model]; l == nil || !x.Time.Before(l.Time) {
			latest[x.Model] = x
		}
		k := modelProfile{x.Model, x.Profile}
		if l := last[k]; l == nil || !x.Time.Before(l.Time) {
			before[k], last[k] = l, x
		} else if b := before[k]; b == nil || x.Time.After(b.Time) {
			before[k] = x
		}
	}
	prev := map[string]*modelbench.Result{}
	for m, x := range latest {
		if p := before[modelProfile{m, x.Profile}]; p != nil {
			prev[m] = p
		}
	}
	return benchHistory{latest: latest, prev: prev, count: count}
}

// models are the benchmarked models, sorted.
func (h benchHistory) models() []string {
	models := make([]string, 0, len(h.latest))
	for m := range h.latest {
		models = append(models, m)
	}
	slices.Sort(models)
	return models
}

// row is model m's latest run, with the figures that moved since the
// previous run of its profile.
func (h benchHistory) row(m string) BenchRow {
	x := h.latest[m]
	row := BenchRow{Model: m, Profile: x.Profile, RunID: x.ID, Time: x.Time, Runs: h.count[m], OK: x.OK,
		ErrorRate: x.ErrorRate, P50Ms: x.Latency.P50, P95Ms: x.Latency.P95, Throughput: x.Throughput,
		TokensPerSec: x.TokensPerSec, PassRate: -1}
	if x.Quality != nil {
		row.PassRate = x.Quality.PassRate
	}
	if p := h.prev[m]; p != nil {
		for _, d := range modelbench.Compare(p, x).Deltas {
			if (d.Points && math.Abs(d.Change) >= 0.1) || (!d.Points && math.Abs(d.Change) >= 0.01) {
				row.Changes = append(row.Changes, d.String())
			}
		}
	}
	return row
}

// modelHealth recommends on a model's latest run x: investigate it when
// too many bench requests failed, keep it from complex reasoning when it
// fails half the quality cases, else serve it.
func modelHealth(x *modelbench.Result, row BenchRow) Recommendation {
	rec := Recommendation{Part: KindBenchmark, Model: row.Model, Setting: "model health", Current: "serve", Recommended: "serve",
		Numbers: map[string]float64{"error_rate": x.ErrorRate, "p95_ms": x.Latency.P95, "tokens_per_s": x.TokensPerSec, "pass_rate": row.PassRate}}
	switch {
	case x.ErrorRate > benchErrorLimit:
		rec.Recommended, rec.Change = "investigate", true
		rec.Reason = fmt.Sprintf("%.0f%% of the bench requests failed (%v) in run %s: give it a fallback or fix it", 100*x.ErrorRate, x.Errors, x.ID)
	case row.PassRate >= 0 && row.PassRate < 0.5:
		rec.Recommended, rec.Change = "not for complex-reasoning", true
		rec.Reason = fmt.Sprintf("passes %.0f%% of the quality cases", 100*row.PassRate)
	default:
		rec.Reason = fmt.Sprintf("healthy: %.0f%% errors, p95 %.0f ms, %.1f tok/s", 100*x.ErrorRate, x.Latency.P95, x.TokensPerSec)
	}
	return rec
}

// profileOrder recommends putting profile p's best benchmarked model first
// (the most tokens per second for high-throughput, else the best quality),
// among those without too many bench errors. It reports false when none of
// p's models has a benchmark within the error limit.
func profileOrder(p policy.Profile, rows map[string]BenchRow) (Recommendation, bool) {
	best, by := "", "tokens per second"
	score := func(b BenchRow) float64 {
		if p.Name != "high-throughput" && b.PassRate >= 0 {
			by = "quality pass rate, then tokens per second"
			return b.PassRate*1e6 + b.TokensPerSec
		}
		return b.TokensPerSec
	}
	for _, m := range p.Models {
		if b, ok := rows[m]; ok && b.ErrorRate <= benchErrorLimit && (best == "" || score(b) > score(rows[best])) {
			best = m
		}
	}
	if best == "" {
		return Recommendation{}, false
	}
	rec := Recommendation{Part: KindBenchmark, Setting: "dispatcher.auto profile " + p.Name + " models",
		Current: strings.Join(p.Models, ","), Recommended: strings.Join(p.Models, ",")}
	if best != p.Models[0] {
		order := append([]string{best}, slices.DeleteFunc(slices.Clone(p.Models), func(m string) bool { return m == best })...)
		rec.Recommended, rec.Change = strings.Join(order, ","), true
		rec.Reason = fmt.Sprintf("%s is the best benchmarked model of the profile by %s (%.1f tok/s, p95 %.0f ms)", best, by, rows[best].TokensPerSec, rows[best].P95Ms)
	} else {
		rec.Reason = fmt.Sprintf("its first model %s is its best benchmarked one by %s", best, by)
	}
	return rec, true
}

func (r *BenchReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "benchmarks (latest herd bench run per model in %s):\n", wire.StreamBench)
	if len(r.Rows) == 0 {
		fmt.Fprintln(w, "  no runs stored: run `herd bench`")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "model\tprofile\trun\twhen\truns\tok\terrors\tp50 ms\tp95 ms\trps\ttok/s\tquality\tsince previous\t")
	for _, x := range r.Rows {
		q := "-"
		if x.PassRate >= 0 {
			q = fmt.Sprintf("%.0f%%", 100*x.PassRate)
		}
		ch := strings.Join(x.Changes, " ")
		if ch == "" {
			ch = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%.1f%%\t%.0f\t%.0f\t%.2f\t%.1f\t%s\t%s\t\n", x.Model, x.Profile, x.RunID,
			x.Time.Format(time.RFC3339), x.Runs, x.OK, 100*x.ErrorRate, x.P50Ms, x.P95Ms, x.Throughput, x.TokensPerSec, q, ch)
	}
	_ = tw.Flush()
}
