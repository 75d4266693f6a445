package optimizer

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/policy"
)

// Limits of the batch recommendations.
const (
	maxBatchSize       = 256
	maxRecommendedWait = 50 * time.Millisecond
)

// BatchReport is the batch part of a one-shot report: how full the
// dispatchers' batches were and how long requests waited, per model.
type BatchReport struct {
	// BatchSize and MaxWaitMs are the settings the figures ran under.
	BatchSize int     `json:"batch_size"`
	MaxWaitMs float64 `json:"max_wait_ms"`
	// Rows are per model, sorted, then "all".
	Rows []BatchRow `json:"rows"`
}

// BatchRow is one model's batches over the window.
type BatchRow struct {
	Model    string `json:"model"`
	Batches  int    `json:"batches"`
	Requests int    `json:"requests"`
	// Size figures are requests per batch; Fill is size over batch_size.
	MeanSize float64 `json:"mean_size"`
	P50Size  int     `json:"p50_size"`
	P95Size  int     `json:"p95_size"`
	MaxSize  int     `json:"max_size"`
	MeanFill float64 `json:"mean_fill"`
	// FullShare is the share of batches that were full.
	FullShare float64 `json:"full_share"`
	// QueueP50Ms and QueueP95Ms are the answered requests' waits from
	// stored to started (worker events).
	QueueP50Ms int64 `json:"queue_p50_ms"`
	QueueP95Ms int64 `json:"queue_p95_ms"`
}

// BuildBatchReport returns the batch figures of the window's batch and
// request events under batchSize and maxWait.
func BuildBatchReport(batches []events.Batch, reqs []events.Request, batchSize int, maxWait time.Duration) *BatchReport {
	r := &BatchReport{BatchSize: batchSize, MaxWaitMs: float64(maxWait) / float64(time.Millisecond)}
	sizes := map[string][]int{}
	waits := map[string][]int64{}
	for _, b := range batches {
		sizes[b.Model] = append(sizes[b.Model], b.Size)
		sizes[""] = append(sizes[""], b.Size)
	}
	for _, e := range reqs {
		if e.Dispatcher || e.Status != 200 {
			continue
		}
		waits[e.Model] = append(waits[e.Model], e.QueueMs)
		waits[""] = append(waits[""], e.QueueMs)
	}
	models := make([]string, 0, len(sizes))
	for m := range sizes {
		if m != "" {
			models = append(models, m)
		}
	}
	slices.Sort(models)
	if len(models) > 0 {
		models = append(models, "")
	}
	for _, m := range models {
		ss := sizes[m]
		row := BatchRow{Model: m, Batches: len(ss)}
		full := 0
		for _, s := range ss {
			row.Requests += s
			if batchSize > 0 && s >= batchSize {
				full++
			}
		}
		row.MeanSize = float64(row.Requests) / float64(len(ss))
		row.P50Size, row.P95Size, row.MaxSize = policy.Percentile(ss, 0.5), policy.Percentile(ss, 0.95), slices.Max(ss)
		if batchSize > 0 {
			row.MeanFill = row.MeanSize / float64(batchSize)
		}
		row.FullShare = float64(full) / float64(len(ss))
		if w := waits[m]; len(w) > 0 {
			row.QueueP50Ms, row.QueueP95Ms = policy.Percentile(w, 0.5), policy.Percentile(w, 0.95)
		}
		if m == "" {
			row.Model = "all"
		}
		r.Rows = append(r.Rows, row)
	}
	return r
}

// all returns the row over every model, if there were batches.
func (r *BatchReport) all() (BatchRow, bool) {
	if len(r.Rows) == 0 {
		return BatchRow{}, false
	}
	return r.Rows[len(r.Rows)-1], true
}

// Recommend returns the recommendations for dispatcher.batch_size and
// dispatcher.max_wait: a larger batch_size when half the batches were
// full (more requests waited than one batch holds); a longer max_wait
// when batches form but close less than half full; otherwise keep.
func (r *BatchReport) Recommend() []Recommendation {
	maxWait := time.Duration(r.MaxWaitMs * float64(time.Millisecond))
	size := Recommendation{Part: KindBatch, Setting: "dispatcher.batch_size", Current: fmt.Sprint(r.BatchSize), Recommended: fmt.Sprint(r.BatchSize)}
	wait := Recommendation{Part: KindBatch, Setting: "dispatcher.max_wait", Current: maxWait.String(), Recommended: maxWait.String()}
	all, ok := r.all()
	if !ok {
		size.Reason = "no batches in the window: nothing to go by"
		wait.Reason = size.Reason
		return []Recommendation{size, wait}
	}
	nums := map[string]float64{
		"batches": float64(all.Batches), "requests": float64(all.Requests), "mean_size": all.MeanSize,
		"p95_size": float64(all.P95Size), "mean_fill": all.MeanFill, "full_share": all.FullShare,
		"queue_p95_ms": float64(all.QueueP95Ms), "batch_size": float64(r.BatchSize), "max_wait_ms": r.MaxWaitMs,
	}
	size.Numbers, wait.Numbers = nums, nums
	switch {
	case all.FullShare >= 0.5 && r.BatchSize < maxBatchSize:
		n := min(2*r.BatchSize, maxBatchSize)
		size.Recommended, size.Change = fmt.Sprint(n), true
		size.Reason = fmt.Sprintf("%.0f%% of %d batches were full at %d: more requests waited than one batch holds", 100*all.FullShare, all.Batches, r.BatchSize)
	case all.FullShare >= 0.5:
		size.Reason = fmt.Sprintf("%.0f%% of batches were full, but %d is the largest batch_size", 100*all.FullShare, maxBatchSize)
	default:
		size.Reason = fmt.Sprintf("%.0f%% of %d batches were full (mean size %.1f of %d): the size is not the limit", 100*all.FullShare, all.Batches, all.MeanSize, r.BatchSize)
	}
	switch {
	case all.MeanSize >= 2 && all.MeanFill < 0.5 && maxWait < maxRecommendedWait:
		d := min(max(2*maxWait, time.Millisecond), maxRecommendedWait)
		wait.Recommended, wait.Change = d.String(), true
		wait.Reason = fmt.Sprintf("batches form (mean size %.1f) but close %.0f%% full: waiting up to %v fills them, at that much latency", all.MeanSize, 100*all.MeanFill, d)
	case all.MeanSize < 1.5:
		wait.Reason = fmt.Sprintf("requests arrive one at a time (mean batch size %.2f): batching adds nothing, and a batch closes at once when no input waits", all.MeanSize)
	default:
		wait.Reason = fmt.Sprintf("batches average %.1f requests, %.0f%% full, requests wait p95 %d ms: keep", all.MeanSize, 100*all.MeanFill, all.QueueP95Ms)
	}
	return []Recommendation{size, wait}
}

func (r *BatchReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "batches (batch_size %d, max_wait %vms):\n", r.BatchSize, r.MaxWaitMs)
	if len(r.Rows) == 0 {
		fmt.Fprintln(w, "  no batches in the window")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "model\tbatches\trequests\tmean size\tp50\tp95\tmax\tmean fill\tfull\tqueue p50 ms\tqueue p95 ms\t")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%d\t%d\t%d\t%.1f%%\t%.1f%%\t%d\t%d\t\n", x.Model, x.Batches, x.Requests, x.MeanSize,
			x.P50Size, x.P95Size, x.MaxSize, 100*x.MeanFill, 100*x.FullShare, x.QueueP50Ms, x.QueueP95Ms)
	}
	_ = tw.Flush()
}
