package replay

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The HTML pages are self-contained: inline CSS and inline SVG, no script,
// no external asset.

// WriteHTML writes the report as one self-contained HTML page: the run's
// parameters, the counts, latency tables per priority and per model, and
// plots of latency and throughput over time and of the latency
// percentiles (log scale).
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := "herd replay " + r.Params.RunID
	pageStart(&b, title)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p class=sub>%s &middot; started %s</p>\n", esc(title), esc(r.Params.Source), esc(r.Started.Format(time.RFC3339)))

	b.WriteString("<div class=cards>")
	card := func(name, v, cls string) {
		fmt.Fprintf(&b, "<div class='card %s'><div class=v>%s</div><div class=n>%s</div></div>", cls, esc(v), esc(name))
	}
	card("sent", fmt.Sprint(r.Sent), "")
	card("answered", fmt.Sprint(r.Answered), "")
	card("errors", fmt.Sprint(r.Errors), warnIf(r.Errors > 0))
	card("lost", fmt.Sprint(r.Lost), warnIf(r.Lost > 0))
	card("duplicates", fmt.Sprint(r.Duplicates), warnIf(r.Duplicates > 0))
	card("throughput", fmt.Sprintf("%.1f/s", r.Throughput), "")
	card("cache hit rate", fmt.Sprintf("%.1f%%", 100*r.CacheHitRate), "")
	if r.Latency != nil {
		card("p50", ms(r.Latency.P50Ms)+" ms", "")
		card("p99", ms(r.Latency.P99Ms)+" ms", "")
	}
	b.WriteString("</div>\n")

	b.WriteString("<h2>Latency over time</h2>\n")
	b.WriteString(latencyPlot([]runSeries{{"", r.Series, 0}}))
	b.WriteString("<h2>Requests per second</h2>\n")
	b.WriteString(throughputPlot(r.Series))
	b.WriteString("<h2>Latency percentiles</h2>\n")
	var curves []curve
	if r.Latency != nil {
		curves = append(curves, curve{"all", colorAll, false, PercentileCurve(r.Latency.Histogram())})
	}
	for i, p := range r.Priorities() {
		curves = append(curves, curve{"priority " + p, priorityColor(p, i), false, PercentileCurve(r.ByPriority[p].Histogram())})
	}
	b.WriteString(percentilePlot(curves))

	b.WriteString("<h2>Latency (ms) by priority and model</h2>\n<table><tr><th></th><th>sent</th><th>answered</th><th>errors</th><th>lost</th><th>hit %</th><th>mean</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n")
	row := func(name string, s *Summary) {
		hit := 0.0
		if s.Answered > 0 {
			hit = 100 * float64(s.CacheHits+s.CacheCoalesced) / float64(s.Answered)
		}
		fmt.Fprintf(&b, "<tr><th>%s</th><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%.1f</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
			esc(name), s.Sent, s.Answered, s.Errors, s.Lost, hit, ms(s.MeanMs), ms(s.P50Ms), ms(s.P95Ms), ms(s.P99Ms), ms(s.P999Ms), ms(s.MaxMs))
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
	b.WriteString("</table>\n")

	b.WriteString("<h2>Outcomes</h2>\n<table>")
	kv := func(k, v string) { fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", esc(k), esc(v)) }
	kv("ran", secs(r.Seconds))
	kv("sending", secs(r.SendSeconds))
	kv("cache", fmt.Sprintf("hit %d, coalesced %d, miss %d", r.CacheHits, r.CacheCoalesced, r.CacheMisses))
	kv("send lag (ms)", fmt.Sprintf("mean %.2f, p50 %.2f, p99 %.2f, max %.2f", r.SendLag.MeanMs, r.SendLag.P50Ms, r.SendLag.P99Ms, r.SendLag.MaxMs))
	kv("client backlog", fmt.Sprintf("%d sends waited for a free slot (longest %.0f ms)", r.Backlogged, r.BacklogMaxMs))
	for _, c := range r.Codes() {
		kv("error "+c, fmt.Sprint(r.ErrorsByCode[c]))
	}
	b.WriteString("</table>\n")

	b.WriteString("<h2>Parameters</h2>\n<table>")
	writeParams(&b, []Params{r.Params})
	b.WriteString("</table>\n")
	pageEnd(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCompareHTML writes two reports side by side as one self-contained
// HTML page: every figure of Compare with its ratio, the latency
// percentiles and the latency over time of both runs, and both runs'
// parameters.
func WriteCompareHTML(w io.Writer, a, b *Report, nameA, nameB string) error {
	var s strings.Builder
	title := "herd replay: " + nameA + " vs " + nameB
	pageStart(&s, title)
	fmt.Fprintf(&s, "<h1>%s</h1>\n", esc(title))
	fmt.Fprintf(&s, "<table><tr><th></th><th>A: %s</th><th>B: %s</th><th>B/A</th></tr>\n", esc(nameA), esc(nameB))
	for _, r := range Compare(a, b) {
		ratio := r.Ratio()
		cls := ""
		if r.Unit == "ms" && !math.IsNaN(ratio) && ratio > 1.1 {
			cls = " class=worse"
		} else if r.Unit == "ms" && ratio < 0.9 {
			cls = " class=better"
		}
		fmt.Fprintf(&s, "<tr><th>%s</th><td>%s</td><td>%s</td><td%s>%s</td></tr>\n",
			esc(r.Name), esc(format(r.A, r.Unit)), esc(format(r.B, r.Unit)), cls, formatRatio(ratio))
	}
	s.WriteString("</table>\n<h2>Latency percentiles</h2>\n")
	s.WriteString(percentilePlot([]curve{
		{"A " + nameA, colorA, false, PercentileCurve(a.Latency.Histogram())},
		{"B " + nameB, colorB, false, PercentileCurve(b.Latency.Histogram())},
	}))
	s.WriteString("<h2>Latency over time</h2>\n")
	s.WriteString(latencyPlot([]runSeries{{"A ", a.Series, 0}, {"B ", b.Series, 1}}))
	s.WriteString("<h2>Parameters</h2>\n<table>")
	writeParams(&s, []Params{a.Params, b.Params})
	s.WriteString("</table>\n")
	pageEnd(&s)
	_, err := io.WriteString(w, s.String())
	return err
}

func writeParams(b *strings.Builder, ps []Params) {
	rows := []struct {
		k string
		f func(Params) string
	}{
		{"run id", func(p Params) string { return p.RunID }},
		{"source", func(p Params) string { return p.Source }},
		{"target", func(p Params) string { return p.Target }},
		{"records", func(p Params) string { return fmt.Sprintf("%d of %d", p.Selected, p.Records) }},
		{"capture span", func(p Params) string { return secs(p.CaptureSeconds) }},
		{"speed", func(p Params) string { return p.Speed }},
		{"duration", func(p Params) string { return p.Duration }},
		{"loop", func(p Params) string { return fmt.Sprint(p.Loop) }},
		{"filter", func(p Params) string { return p.Filter }},
		{"seed", func(p Params) string { return fmt.Sprint(p.Seed) }},
		{"max in flight", func(p Params) string { return fmt.Sprint(p.MaxInflight) }},
		{"concurrency", func(p Params) string { return fmt.Sprint(p.Concurrency) }},
		{"drain", func(p Params) string { return p.Drain }},
	}
	for _, r := range rows {
		fmt.Fprintf(b, "<tr><th>%s</th>", esc(r.k))
		for _, p := range ps {
			fmt.Fprintf(b, "<td>%s</td>", esc(r.f(p)))
		}
		b.WriteString("</tr>\n")
	}
}

func warnIf(bad bool) string {
	if bad {
		return "bad"
	}
	return ""
}

func esc(s string) string { return html.EscapeString(s) }

func pageStart(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;margin-top:1.8em}.sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.25em .7em;border-bottom:1px solid #e4e4e4;text-align:right}
th:first-child{text-align:left}tr th{font-weight:600}td{font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:1.2em 0}.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:6em}
.card .v{font-size:1.3em;font-weight:600}.card .n{color:#666;font-size:.85em}.card.bad{border-color:#d62728;color:#d62728}
.worse{color:#d62728}.better{color:#2ca02c}svg{display:block;max-width:100%%;height:auto}
</style></head><body>
`, esc(title))
}

func pageEnd(b *strings.Builder) { b.WriteString("</body></html>\n") }

// Plot colours.
const (
	colorAll = "#222222"
	colorA   = "#1f77b4"
	colorB   = "#ff7f0e"
)

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"}

func priorityColor(p string, i int) string {
	switch p {
	case "high":
		return "#d62728"
	case "normal":
		return "#1f77b4"
	case "low":
		return "#2ca02c"
	}
	return palette[i%len(palette)]
}

// line is one polyline of a plot, in data units; a NaN y breaks it.
type line struct {
	name, color string
	dashed      bool
	pts         [][2]float64
}

type tick struct {
	v     float64
	label string
}

type axis struct {
	label    string
	min, max float64
	ticks    []tick
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int, unit string) (float64, float64, []tick) {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	var ts []tick
	for v := lo; v <= hi+step/2; v += step {
		ts = append(ts, tick{v, strings.TrimSuffix(strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), "."), ".") + unit})
	}
	return lo, hi, ts
}

// plot renders lines as an inline SVG chart.
func plot(title string, x, y axis, lines []line) string {
	const W, H, left, right, top, bottom = 960, 320, 64, 16, 30, 44
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	px := func(v float64) float64 { return left + (v-x.min)/(x.max-x.min)*pw }
	py := func(v float64) float64 { return top + ph - (v-y.min)/(y.max-y.min)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="11" fill="#444" role="img" aria-label="%s">`+"\n", W, H, W, H, esc(title))
	fmt.Fprintf(&b, "<title>%s</title>\n", esc(title))
	for _, t := range y.ticks {
		fmt.Fprintf(&b, `<line stroke="#e8e8e8" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n",
			left, W-right, py(t.v), py(t.v), left-6, py(t.v), esc(t.label))
	}
	for _, t := range x.ticks {
		fmt.Fprintf(&b, `<line stroke="#e8e8e8" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			px(t.v), px(t.v), top, H-bottom, px(t.v), H-bottom+16, esc(t.label))
	}
	fmt.Fprintf(&b, `<line stroke="#999" x1="%d" x2="%d" y1="%d" y2="%d"/><line stroke="#999" x1="%d" x2="%d" y1="%d" y2="%d"/>`+"\n",
		left, W-right, H-bottom, H-bottom, left, left, top, H-bottom)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", left+pw/2, H-6, esc(x.label))
	fmt.Fprintf(&b, `<text x="14" y="%.1f" text-anchor="middle" transform="rotate(-90 14 %.1f)">%s</text>`+"\n", top+ph/2, top+ph/2, esc(y.label))
	legendX := float64(left)
	for _, l := range lines {
		var d strings.Builder
		pen := false
		for _, p := range l.pts {
			if math.IsNaN(p[1]) || math.IsInf(p[1], 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, px(p[0]), py(min(max(p[1], y.min), y.max)))
			pen = true
		}
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="5 3"`
		}
		if d.Len() > 0 {
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.6"%s><title>%s</title></path>`+"\n", strings.TrimSpace(d.String()), l.color, dash, esc(l.name))
		}
		// Legend, in a row above the plot.
		lx, ly := legendX, 12.0
		legendX += 40 + 6.5*float64(len(l.name))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"%s/><text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n",
			lx, lx+18, ly, ly, l.color, dash, lx+24, ly, esc(l.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// runSeries is one run's per-second series for a plot.
type runSeries struct {
	prefix string
	s      []Second
	idx    int
}

// latencyPlot draws p50 and p99 per second for each run.
func latencyPlot(runs []runSeries) string {
	var lines []line
	tmax, ymax := 1.0, 0.0
	colors := [][2]string{{"#1f77b4", "#d62728"}, {"#ff7f0e", "#9467bd"}}
	for _, r := range runs {
		p50 := line{name: r.prefix + "p50", color: colors[r.idx%2][0]}
		p99 := line{name: r.prefix + "p99", color: colors[r.idx%2][1]}
		if r.idx > 0 {
			p50.dashed, p99.dashed = true, true
		}
		for _, s := range r.s {
			x := float64(s.T) + 0.5
			tmax = max(tmax, float64(s.T+1))
			if s.Answered == 0 {
				p50.pts = append(p50.pts, [2]float64{x, math.NaN()})
				p99.pts = append(p99.pts, [2]float64{x, math.NaN()})
				continue
			}
			p50.pts = append(p50.pts, [2]float64{x, s.P50Ms})
			p99.pts = append(p99.pts, [2]float64{x, s.P99Ms})
			ymax = max(ymax, s.P99Ms)
		}
		lines = append(lines, p50, p99)
	}
	xlo, xhi, xt := niceTicks(0, tmax, 10, "s")
	ylo, yhi, yt := niceTicks(0, ymax*1.05, 5, "")
	return plot("latency over time (answers per second of arrival)",
		axis{"seconds since start", xlo, xhi, xt}, axis{"latency ms", ylo, yhi, yt}, lines)
}

// throughputPlot draws sent, answered and errors per second.
func throughputPlot(ss []Second) string {
	sent := line{name: "sent/s", color: "#7f7f7f", dashed: true}
	ans := line{name: "answered/s", color: "#2ca02c"}
	errs := line{name: "errors/s", color: "#d62728"}
	tmax, ymax := 1.0, 1.0
	for _, s := range ss {
		x := float64(s.T) + 0.5
		tmax = max(tmax, float64(s.T+1))
		sent.pts = append(sent.pts, [2]float64{x, float64(s.Sent)})
		ans.pts = append(ans.pts, [2]float64{x, float64(s.Answered)})
		errs.pts = append(errs.pts, [2]float64{x, float64(s.Errors)})
		ymax = max(ymax, float64(s.Sent), float64(s.Answered), float64(s.Errors))
	}
	xlo, xhi, xt := niceTicks(0, tmax, 10, "s")
	ylo, yhi, yt := niceTicks(0, ymax*1.05, 5, "")
	return plot("requests per second", axis{"seconds since start", xlo, xhi, xt}, axis{"requests", ylo, yhi, yt}, []line{sent, ans, errs})
}

// curve is a percentile curve for percentilePlot.
type curve struct {
	name, color string
	dashed      bool
	pts         []Point
}

// percentileX maps a percentile to the plot's log scale: log10(1/(1-p)).
func percentileX(p float64) float64 { return math.Log10(1 / (1 - p/100)) }

// percentilePlot draws latency against percentile on a log scale.
func percentilePlot(curves []curve) string {
	var lines []line
	xmax, ymax := 2.0, 0.0
	for _, c := range curves {
		l := line{name: c.name, color: c.color, dashed: c.dashed}
		for _, p := range c.pts {
			x := percentileX(p.Percentile)
			l.pts = append(l.pts, [2]float64{x, p.Ms})
			xmax, ymax = max(xmax, x), max(ymax, p.Ms)
		}
		lines = append(lines, l)
	}
	xmax = math.Ceil(xmax)
	xt := []tick{{percentileX(50), "50%"}, {percentileX(75), "75%"}}
	for k := 0.0; k <= xmax; k++ {
		label := "0%"
		if k > 0 {
			d := math.Pow(10, max(k-2, 0))
			label = strconv.FormatFloat(math.Round(100*(1-math.Pow(10, -k))*d)/d, 'f', -1, 64) + "%"
		}
		xt = append(xt, tick{k, label})
	}
	ylo, yhi, yt := niceTicks(0, ymax*1.05, 5, "")
	return plot("latency by percentile", axis{"percentile (log scale)", 0, xmax, xt}, axis{"latency ms", ylo, yhi, yt}, lines)
}

// WriteHTML writes a capacity search as a self-contained page: the
// capacity overall, per priority and per model, and the curve of arrival
// rate to p50, p95 and p99 of every step, with the targets.
func (c *Capacity) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := "herd capacity"
	pageStart(&b, title)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<p class=sub>%s &middot; target p95 &lt; %s ms, p99 &lt; %s ms, errors &lt; %.2g%% &middot; %d replays in %.0fs, stopped: %s</p>\n",
		esc(title), esc(c.Source), ms(c.Target.P95Ms), ms(c.Target.P99Ms), 100*c.Target.ErrorRate, len(c.Steps), c.Seconds, esc(c.Stopped))
	b.WriteString("<div class=cards>")
	capacity := "none held"
	if c.Speed > 0 {
		capacity = fmt.Sprintf("%.2f/s", c.Rate)
	}
	fmt.Fprintf(&b, "<div class='card %s'><div class=v>%s</div><div class=n>capacity (speed %s)</div></div>", warnIf(c.Speed == 0), esc(capacity), esc(FormatSpeed(c.Speed)))
	for _, g := range c.ByPriority {
		v := "none held"
		if g.Speed > 0 {
			v = fmt.Sprintf("%.2f/s", g.Rate)
		}
		fmt.Fprintf(&b, "<div class='card %s'><div class=v>%s</div><div class=n>priority %s</div></div>", warnIf(g.Speed == 0), esc(v), esc(g.Name))
	}
	b.WriteString("</div>\n<h2>Latency against arrival rate</h2>\n")
	steps := slices.Clone(c.Steps)
	slices.SortFunc(steps, func(a, b CapacityStep) int { return cmp.Compare(a.Rate, b.Rate) })
	p50 := line{name: "p50", color: "#2ca02c"}
	p95 := line{name: "p95", color: "#1f77b4"}
	p99 := line{name: "p99", color: "#d62728"}
	xmax, ymax := 1.0, max(c.Target.P99Ms, 1)
	for _, st := range steps {
		p50.pts = append(p50.pts, [2]float64{st.Rate, st.P50Ms})
		p95.pts = append(p95.pts, [2]float64{st.Rate, st.P95Ms})
		p99.pts = append(p99.pts, [2]float64{st.Rate, st.P99Ms})
		xmax, ymax = max(xmax, st.Rate), max(ymax, st.P99Ms)
	}
	ymax = min(ymax, 4*c.Target.P99Ms) // a collapsed step is drawn at the top
	lines := []line{p50, p95, p99,
		{name: "p95 target", color: "#1f77b4", dashed: true, pts: [][2]float64{{0, c.Target.P95Ms}, {xmax, c.Target.P95Ms}}},
		{name: "p99 target", color: "#d62728", dashed: true, pts: [][2]float64{{0, c.Target.P99Ms}, {xmax, c.Target.P99Ms}}},
	}
	for i, p := range capacityNames(c.ByPriority) {
		l := line{name: "priority " + p + " p95", color: priorityColor(p, i), dashed: true}
		for _, st := range steps {
			if pt, ok := st.ByPriority[p]; ok {
				l.pts = append(l.pts, [2]float64{st.Rate, pt.P95Ms})
			}
		}
		lines = append(lines, l)
	}
	xlo, xhi, xt := niceTicks(0, xmax*1.05, 8, "/s")
	ylo, yhi, yt := niceTicks(0, ymax*1.05, 5, "")
	b.WriteString(plot("latency against arrival rate", axis{"arrival rate, requests per second", xlo, xhi, xt}, axis{"latency ms", ylo, yhi, yt}, lines))

	b.WriteString("<h2>Steps</h2>\n<table><tr><th>speed</th><th>rate/s</th><th>sent</th><th>p50</th><th>p95</th><th>p99</th><th>errors</th><th>held</th></tr>\n")
	for _, st := range c.Steps {
		held := "yes"
		if !st.Held {
			held = "no: " + strings.Join(st.Misses, ", ")
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%.2f</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%.2f%%</td><td class='%s'>%s</td></tr>\n",
			esc(FormatSpeed(st.Speed)), st.Rate, st.Sent, ms(st.P50Ms), ms(st.P95Ms), ms(st.P99Ms), 100*st.ErrorRate, warnIf(!st.Held), esc(held))
	}
	b.WriteString("</table>\n<h2>Capacity by priority and model</h2>\n<table><tr><th></th><th>rate/s (its own)</th><th>at speed</th><th>p50</th><th>p95</th><th>p99</th><th>errors</th></tr>\n")
	for _, g := range []struct {
		kind   string
		groups []GroupCapacity
	}{{"priority", c.ByPriority}, {"model", c.ByModel}} {
		for _, gc := range g.groups {
			if gc.Speed == 0 {
				fmt.Fprintf(&b, "<tr><td>%s %s</td><td class=warn colspan=6>held at no speed tried</td></tr>\n", g.kind, esc(gc.Name))
				continue
			}
			fmt.Fprintf(&b, "<tr><td>%s %s</td><td>%.2f</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.2f%%</td></tr>\n", g.kind, esc(gc.Name),
				gc.Rate, esc(FormatSpeed(gc.Speed)), ms(gc.P50Ms), ms(gc.P95Ms), ms(gc.P99Ms), 100*gc.ErrorRate)
		}
	}
	b.WriteString("</table>\n")
	pageEnd(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func capacityNames(gs []GroupCapacity) []string {
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	return names
}
