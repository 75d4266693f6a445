package modelbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/nats-io/nuid"
	"go.uber.org/zap"
)

// Options configure Run.
type Options struct {
	// Config applies to every model.
	Config
	// Models to benchmark, one after the other. Default: every model that
	// a live worker registered.
	Models []string
	// Store keeps every result and finds the previous run to compare
	// with. Nil: results are neither stored nor compared.
	Store *Store
	// Progress receives one line as each model starts and ends, and while
	// its requests run a progress line every second (redrawn in place on a
	// terminal). Nil: none.
	Progress io.Writer
}

// Report is the outcome of Run: what --json writes.
type Report struct {
	Results []*Result `json:"results"`
	// Comparisons hold, for each result that has one, the changes since
	// the previous run of the same model and profile.
	Comparisons []Comparison `json:"comparisons,omitempty"`
}

// Run benchmarks each model in turn, stores each result and compares it
// with the model's previous run. It returns ErrNoModels when there is
// nothing to benchmark, ctx's error when it ended, and a store error when
// a result could not be kept (the report so far is returned with it).
func (r *Runner) Run(ctx context.Context, o Options) (*Report, error) {
	cfg, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	registered, err := r.Models(ctx)
	if err != nil && len(o.Models) == 0 {
		return nil, err
	}
	models := o.Models
	if len(models) == 0 {
		models = slices.Sorted(maps.Keys(registered))
	}
	if len(models) == 0 {
		return nil, ErrNoModels
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	id := nuid.Next()
	rep := &Report{}
	for _, model := range models {
		fmt.Fprintf(progress, "bench %s: %s, %d requests, %d at a time\n",
			model, cfg.Profile.Name, cfg.Profile.Requests, cfg.Profile.Concurrency)
		res, err := r.bench(ctx, model, cfg, progress)
		if err != nil {
			return rep, fmt.Errorf("bench %s: %w", model, err)
		}
		res.ID, res.Digest = id, registered[model]
		rep.Results = append(rep.Results, res)
		fmt.Fprintf(progress, "bench %s: %d/%d answered, p95 %s\n", model, res.OK, res.Requests, fmtMs(res.Latency.P95))
		if o.Store == nil {
			continue
		}
		prev, err := o.Store.Last(ctx, model, res.Profile)
		switch {
		case err == nil:
			rep.Comparisons = append(rep.Comparisons, Compare(prev, res))
		case !errors.Is(err, ErrNoRuns):
			r.log.Warn("cannot read the previous run; not comparing", zap.String("model", model), zap.Error(err))
		}
		if err := o.Store.Save(ctx, res); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
