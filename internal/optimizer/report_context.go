package optimizer

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/policy"
)

// ContextReport is the context part of a one-shot report: per model, the
// prompt sizes of the window's answers, the prompts that filled their
// window, the num_ctx now and the one the optimizer's policy
// (optimizer.context) chooses from these prompts.
type ContextReport struct {
	Rows            []ContextRow     `json:"rows"`
	Recommendations []Recommendation `json:"-"`
}

// ContextRow is one model's prompts over the window.
type ContextRow struct {
	Model   string `json:"model"`
	Prompts int    `json:"prompts"`
	// Prompt token percentiles.
	P50 int `json:"prompt_p50"`
	P95 int `json:"prompt_p95"`
	P99 int `json:"prompt_p99"`
	Max int `json:"prompt_max"`
	// Truncated counts prompts that filled the num_ctx they ran in;
	// TruncatedNow those that ran in the current one.
	Truncated    int `json:"truncated"`
	TruncatedNow int `json:"truncated_now"`
	// NumCtx is the window the model runs in now (the latest answers'),
	// Configured its models[].num_ctx, Decided the optimizer's decision in
	// herd_control (0 when none).
	NumCtx     int `json:"num_ctx"`
	Configured int `json:"configured_num_ctx,omitempty"`
	Decided    int `json:"decided_num_ctx,omitempty"`
	// Recommended is the policy's choice from these prompts; Reason why.
	Recommended int    `json:"recommended_num_ctx"`
	Reason      string `json:"reason"`
}

// BuildContextReport returns the context figures of the window's request
// events at now, choosing with cfg (a fresh policy.ContextSizer, so a
// lowering is never recommended before its wait) and comparing with the
// configured windows.
func BuildContextReport(reqs []events.Request, cfg policy.ContextConfig, configured map[string]int, now time.Time) *ContextReport {
	type obs struct {
		prompt, numCtx int
		truncated      bool
	}
	by := map[string][]obs{}
	for _, e := range reqs {
		if e.Dispatcher || e.Status != 200 || e.PromptTok <= 0 || e.Op == "embed" {
			continue
		}
		by[e.Model] = append(by[e.Model], obs{e.PromptTok, e.NumCtx, e.Truncated})
	}
	models := make([]string, 0, len(by))
	for m := range by {
		models = append(models, m)
	}
	slices.Sort(models)
	sizer := policy.NewContextSizer(cfg)
	r := &ContextReport{Rows: []ContextRow{}}
	for _, m := range models {
		os := by[m]
		row := ContextRow{Model: m, Prompts: len(os), NumCtx: os[len(os)-1].numCtx, Configured: configured[m]}
		if row.NumCtx == 0 {
			row.NumCtx = row.Configured
		}
		prompts := make([]int, 0, len(os))
		in := policy.ContextInput{Current: row.NumCtx}
		for _, o := range os {
			prompts = append(prompts, o.prompt)
			if o.truncated {
				row.Truncated++
			}
			if o.numCtx == row.NumCtx {
				in.PromptTokens = append(in.PromptTokens, o.prompt)
				if o.truncated {
					in.Truncated++
				}
			}
		}
		row.TruncatedNow = in.Truncated
		row.P50, row.P95, row.P99 = policy.Percentile(prompts, 0.5), policy.Percentile(prompts, 0.95), policy.Percentile(prompts, 0.99)
		row.Max = slices.Max(prompts)
		d := sizer.Evaluate(now, m, in)
		row.Recommended, row.Reason = d.Value, d.Reason
		r.Rows = append(r.Rows, row)
		r.Recommendations = append(r.Recommendations, Recommendation{
			Part: KindContext, Model: m, Setting: "num_ctx", Current: fmt.Sprint(row.NumCtx),
			Recommended: fmt.Sprint(d.Value), Change: d.Value != row.NumCtx, Reason: d.Reason, Numbers: d.Numbers,
		})
	}
	return r
}

// noteDecisions fills each row's Decided from herd_control's num_ctx
// decisions.
func (r *ContextReport) noteDecisions(entries []ControlEntry) {
	for i := range r.Rows {
		for _, e := range entries {
			if e.Kind != "numctx" || e.Model != r.Rows[i].Model {
				continue
			}
			var v struct {
				NumCtx int `json:"num_ctx"`
			}
			if json.Unmarshal(e.Value, &v) == nil {
				r.Rows[i].Decided = v.NumCtx
			}
		}
	}
}

func (r *ContextReport) writeText(w io.Writer) {
	fmt.Fprintln(w, "context windows (prompt tokens of answered requests):")
	if len(r.Rows) == 0 {
		fmt.Fprintln(w, "  no answered requests with prompt tokens in the window")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "model\tprompts\tp50\tp95\tp99\tmax\ttruncated\tin num_ctx now\tnum_ctx\tconfigured\tdecided\trecommended\t")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", x.Model, x.Prompts, x.P50, x.P95, x.P99, x.Max,
			x.Truncated, x.TruncatedNow, x.NumCtx, x.Configured, x.Decided, x.Recommended)
	}
	_ = tw.Flush()
}
