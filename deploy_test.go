package herd_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sutazai/herd/internal/reqmetrics"
)

const (
	dashboardFile  = "deploy/grafana/herd-dashboard.json"
	datasourceFile = "deploy/grafana/provisioning/datasources/prometheus.yaml"
	providerFile   = "deploy/grafana/provisioning/dashboards/herd.yaml"
	promConfigFile = "deploy/prometheus/prometheus.yml"
	alertsFile     = "deploy/prometheus/alerts.yml"
)

// metricKind is how a metric is exposed, which decides its series names.
type metricKind int

const (
	plainMetric     metricKind = iota // counter or gauge: the name itself
	histogramMetric                   // name_bucket, name_sum, name_count
	summaryMetric                     // name, name_sum, name_count
)

// pendingMetrics are metrics the dashboard and alerts use that are being
// added to herd in parallel. Until they appear in internal/, expressions
// that use them are accepted and the test logs them.
var pendingMetrics = map[string]metricKind{
	"herd_request_duration_seconds": histogramMetric,
	"herd_queue_wait_seconds":       histogramMetric,
	"herd_queue_depth":              plainMetric,
	"herd_queue_oldest_age_seconds": plainMetric,
	"herd_cache_results_total":      plainMetric,
}

// herdMetrics returns every metric name herd's sources under internal/
// define (the Name of a prometheus.*Opts literal, any `Name: "herd_..."`
// string, and the name of a custom collector's prometheus.NewDesc), with its
// kind.
func herdMetrics(t *testing.T) map[string]metricKind {
	t.Helper()
	kinds := map[string]metricKind{}
	nameRe := regexp.MustCompile(`(?:Name:|NewDesc\()\s*"(herd_[a-z0-9_]+)"`)
	fset := token.NewFileSet()
	err := filepath.WalkDir("internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range nameRe.FindAllSubmatch(src, -1) {
			if _, ok := kinds[string(m[1])]; !ok {
				kinds[string(m[1])] = plainMetric
			}
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			kind := plainMetric
			switch sel.Sel.Name {
			case "HistogramOpts":
				kind = histogramMetric
			case "SummaryOpts":
				kind = summaryMetric
			case "CounterOpts", "GaugeOpts":
			default:
				return true
			}
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "Name" {
					continue
				}
				if v, ok := kv.Value.(*ast.BasicLit); ok && v.Kind == token.STRING {
					if name, err := strconv.Unquote(v.Value); err == nil {
						kinds[name] = kind
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kinds) == 0 {
		t.Fatal("found no herd_ metrics under internal/")
	}
	return kinds
}

// seriesNames expands metric names to the series names Prometheus stores.
func seriesNames(kinds map[string]metricKind) map[string]string {
	out := map[string]string{}
	for name, k := range kinds {
		switch k {
		case histogramMetric:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[name+s] = name
			}
		case summaryMetric:
			out[name] = name
			for _, s := range []string{"_sum", "_count"} {
				out[name+s] = name
			}
		default:
			out[name] = name
		}
	}
	return out
}

var (
	promStringRe   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatchersRe = regexp.MustCompile(`\{[^}]*\}`)
	promRangeRe    = regexp.MustCompile(`\[[^\]]*\]`)
	promGroupingRe = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promVarRe      = regexp.MustCompile(`\$\{?[A-Za-z0-9_]+\}?`)
	promIdentRe    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords   = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
		"group_left", "group_right", "inf", "nan", "start", "end", "atan2"}
)

// exprMetrics returns the metric names a PromQL expression selects: every
// identifier that is not a function call, keyword, label, duration or number.
// Grafana variables ($__rate_interval, ${DS}) are dropped first.
func exprMetrics(expr string) []string {
	s := promStringRe.ReplaceAllString(expr, `""`)
	s = promVarRe.ReplaceAllString(s, " ")
	s = promMatchersRe.ReplaceAllString(s, " ")
	s = promRangeRe.ReplaceAllString(s, " ")
	s = promGroupingRe.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdentRe.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // 1e3, 5m
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") {
			continue // function
		}
		if slices.Contains(promKeywords, strings.ToLower(id)) || slices.Contains(names, id) {
			continue
		}
		names = append(names, id)
	}
	return names
}

func TestExprMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up{job=~"dispatcher|worker"} == 0`, []string{"up"}},
		{`histogram_quantile(0.95, sum by (le, priority) (rate(herd_x_seconds_bucket{priority="high"}[$__rate_interval]))) > 30`, []string{"herd_x_seconds_bucket"}},
		{`(sum(increase(a_total[15m])) or vector(0)) + sum without (worker) (b) > 1e3`, []string{"a_total", "b"}},
		{`sum by (worker) (busy) / on (worker) group_left (model) slots offset 5m`, []string{"busy", "slots"}},
		{`max by (model) (herd_optimizer_breaker_state) == 2`, []string{"herd_optimizer_breaker_state"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := exprMetrics(tt.expr); !slices.Equal(got, tt.want) {
				t.Errorf("exprMetrics = %v, want %v", got, tt.want)
			}
		})
	}
}

// metricChecker reports expressions that select metrics herd does not
// define, logging (once) the pending metrics that are not defined yet.
// natsExporterMetrics are the prometheus-nats-exporter series the
// dashboard may query (gnatsd_varz_* from -varz, jetstream_* from -jsz).
var natsExporterMetrics = []string{"gnatsd_varz_connections", "gnatsd_varz_slow_consumers", "jetstream_stream_total_messages"}

type metricChecker struct {
	t       *testing.T
	known   map[string]string
	pending map[string]string
	logged  map[string]bool
}

func newMetricChecker(t *testing.T) *metricChecker {
	t.Helper()
	kinds := herdMetrics(t)
	pending := map[string]metricKind{}
	for name, k := range pendingMetrics {
		if _, ok := kinds[name]; !ok {
			pending[name] = k
		}
	}
	known := seriesNames(kinds)
	known["up"] = "up"
	// The NATS project's exporter (compose's nats-exporter, -varz -jsz=all):
	// the gauges the dashboard's NATS row reads.
	for _, n := range natsExporterMetrics {
		known[n] = n
	}
	return &metricChecker{t: t, known: known, pending: seriesNames(pending), logged: map[string]bool{}}
}

func (c *metricChecker) check(where, expr string) {
	c.t.Helper()
	names := exprMetrics(expr)
	if len(names) == 0 {
		c.t.Errorf("%s: expression selects no metric: %s", where, expr)
	}
	for _, n := range names {
		if _, ok := c.known[n]; ok {
			continue
		}
		if base, ok := c.pending[n]; ok {
			if !c.logged[base] {
				c.logged[base] = true
				c.t.Logf("%s is not in internal/ yet (being added in parallel); not checked", base)
			}
			continue
		}
		c.t.Errorf("%s: %q is not a metric herd defines (expr: %s)", where, n, expr)
	}
}

type grafanaPanel struct {
	ID         int                 `json:"id"`
	Type       string              `json:"type"`
	Title      string              `json:"title"`
	Datasource *grafanaDS          `json:"datasource"`
	GridPos    *struct{ H, W int } `json:"gridPos"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource *grafanaDS `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TestDashboard checks that the Grafana dashboard parses, that every panel
// queries the provisioned Prometheus, and that every query selects metrics
// herd exports.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string         `json:"uid"`
		Title         string         `json:"title"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name    string `json:"name"`
				Type    string `json:"type"`
				Query   string `json:"query"`
				Current struct {
					Value string `json:"value"`
				} `json:"current"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard has no uid or title")
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion = %d, want >= 36 (datasources by uid)", d.SchemaVersion)
	}

	// The datasource variable must default to the provisioned datasource.
	provisioned := provisionedDatasourceUID(t)
	dsOK := map[string]bool{provisioned: true}
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			if v.Query != "prometheus" || v.Current.Value != provisioned {
				t.Errorf("variable %s: query %q, default %q; want prometheus, %q", v.Name, v.Query, v.Current.Value, provisioned)
			}
			dsOK["${"+v.Name+"}"] = true
			dsOK["$"+v.Name] = true
		}
	}

	c := newMetricChecker(t)
	ids := map[int]string{}
	queries := 0
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			where := "panel " + strconv.Quote(p.Title)
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("%s: id %d is also %q's", where, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("%s: no gridPos", where)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no queries", where)
			}
			if p.Datasource == nil || !dsOK[p.Datasource.UID] {
				t.Errorf("%s: datasource %+v is not the provisioned Prometheus (%v)", where, p.Datasource, dsOK)
			}
			for _, tg := range p.Targets {
				w := where + " query " + tg.RefID
				if tg.Datasource != nil && !dsOK[tg.Datasource.UID] {
					t.Errorf("%s: datasource %+v is not the provisioned Prometheus", w, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: empty expr", w)
					continue
				}
				queries++
				c.check(w, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	if queries == 0 {
		t.Fatal("dashboard has no queries")
	}
	t.Logf("%d panels, %d queries", len(ids), queries)
}

func provisionedDatasourceUID(t *testing.T) string {
	t.Helper()
	var f struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name string `yaml:"name"`
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	decodeYAML(t, datasourceFile, &f, false)
	for _, ds := range f.Datasources {
		if ds.Type == "prometheus" {
			if ds.UID == "" || ds.URL != "http://prometheus:9090" {
				t.Errorf("%s: datasource %q: uid %q, url %q; want a uid and http://prometheus:9090", datasourceFile, ds.Name, ds.UID, ds.URL)
			}
			return ds.UID
		}
	}
	t.Fatalf("%s: no prometheus datasource", datasourceFile)
	return ""
}

// dashboardProviderPath returns the directory Grafana's file provider loads
// dashboards from.
func dashboardProviderPath(t *testing.T) string {
	t.Helper()
	var f struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeYAML(t, providerFile, &f, false)
	for _, p := range f.Providers {
		if p.Type == "file" && p.Options.Path != "" {
			return p.Options.Path
		}
	}
	t.Fatalf("%s: no file provider with a path", providerFile)
	return ""
}

// decodeYAML decodes file into v. When strict, fields v does not have are
// errors (a misspelt "anotations" must not pass).
func decodeYAML(t *testing.T, file string, v any, strict bool) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

var promDurationRe = regexp.MustCompile(`^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$`)

// TestAlertRules checks the structure of the alert rules and that their
// expressions select metrics herd exports.
func TestAlertRules(t *testing.T) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert         string            `yaml:"alert"`
				KeepFiringFor string            `yaml:"keep_firing_for"`
				Record        string            `yaml:"record"`
				Expr          string            `yaml:"expr"`
				For           string            `yaml:"for"`
				Labels        map[string]string `yaml:"labels"`
				Annotations   map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	decodeYAML(t, alertsFile, &f, true)
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no groups", alertsFile)
	}
	c := newMetricChecker(t)
	seen := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" {
				t.Errorf("group %s: a rule has no alert name (expr %q)", g.Name, r.Expr)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: defined twice", where)
			}
			seen[r.Alert] = true
			if !promDurationRe.MatchString(r.For) {
				t.Errorf("%s: for = %q, want a duration", where, r.For)
			}
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: labels.severity = %q, want critical, warning or info", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs annotations.summary and annotations.description", where)
			}
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: empty expr", where)
				continue
			}
			c.check(where, r.Expr)
		}
	}
	// What the operators asked to be paged for.
	for _, want := range []string{"HerdQueueGrowing", "HerdQueueStale", "HerdHighPriorityLatency", "HerdErrorRate", "HerdBreakerOpen", "HerdDeadLettersGrowing", "HerdServiceDown"} {
		if !seen[want] {
			t.Errorf("%s has no %s alert", alertsFile, want)
		}
	}
}

// TestPrometheusConfig checks that Prometheus scrapes each herd service by
// its compose name on :8080/metrics and loads rule files that exist.
func TestPrometheusConfig(t *testing.T) {
	var f struct {
		Global        map[string]any `yaml:"global"`
		RuleFiles     []string       `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeYAML(t, promConfigFile, &f, false)
	hasAlerts := false
	for _, rf := range f.RuleFiles {
		p := rf
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(promConfigFile), rf)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("rule file %s: %v", rf, err)
		}
		if filepath.Clean(p) == filepath.Clean(alertsFile) {
			hasAlerts = true
		}
	}
	if !hasAlerts {
		t.Errorf("rule_files %v does not load %s", f.RuleFiles, alertsFile)
	}
	services := loadCompose(t).ServiceNames()
	jobs := map[string][]string{}
	for _, sc := range f.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %q, herd serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				host, _, _ := strings.Cut(tg, ":")
				if host != "localhost" && !slices.Contains(services, host) {
					t.Errorf("job %s: target %s is not a compose service", sc.JobName, tg)
				}
				jobs[sc.JobName] = append(jobs[sc.JobName], tg)
			}
		}
		// DNS discovery finds every replica of a scaled service
		// (--scale worker=N): compose answers its name with an A record
		// per container.
		for _, sd := range sc.DNSSDConfigs {
			for _, name := range sd.Names {
				if !slices.Contains(services, name) || sd.Type != "A" {
					t.Errorf("job %s: dns_sd_configs %s type %q is not a compose service's A records", sc.JobName, name, sd.Type)
				}
				jobs[sc.JobName] = append(jobs[sc.JobName], fmt.Sprintf("%s:%d", name, sd.Port))
			}
		}
	}
	for _, svc := range []string{"dispatcher", "worker", "optimizer"} {
		if !slices.Contains(jobs[svc], svc+":8080") {
			t.Errorf("job %s does not scrape %s:8080 (has %v)", svc, svc, jobs[svc])
		}
	}
}

// TestPromtool runs promtool's own checks when bin/promtool is installed
// (scripts/tools.sh promtool).
func TestPromtool(t *testing.T) {
	promtool, err := filepath.Abs("bin/promtool")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(promtool); err != nil {
		t.Skip("bin/promtool is not installed (scripts/tools.sh promtool); promtool checks skipped")
	}
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"check", "config", promConfigFile},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		})
	}
}

// TestDashboardVariables: the dashboard has model and worker variables
// (Grafana templating on label_values, All by default) and every query on
// a metric with those labels filters by them; request outcomes are
// grouped by reqmetrics.OutcomeLabel, and the error ratio counts the
// outcomes the error-rate alert does.
func TestDashboardVariables(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      string `json:"query"`
				IncludeAll bool   `json:"includeAll"`
				Multi      bool   `json:"multi"`
				AllValue   string `json:"allValue"`
			} `json:"list"`
		} `json:"templating"`
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			vars[v.Name] = v.Query
			if !v.IncludeAll || !v.Multi || v.AllValue != ".*" {
				t.Errorf("variable %s: includeAll %v, multi %v, allValue %q; want All (.*) and several values", v.Name, v.IncludeAll, v.Multi, v.AllValue)
			}
		}
	}
	for name, want := range map[string]*regexp.Regexp{
		"model":  regexp.MustCompile(`^label_values\(herd_\w+, model\)$`),
		"worker": regexp.MustCompile(`^label_values\(herd_worker_\w+, worker\)$`),
	} {
		if q, ok := vars[name]; !ok || !want.MatchString(q) {
			t.Errorf("variable %s: query %q, want %v", name, q, want)
		}
	}

	modelMetrics := map[string]bool{
		"herd_requests_total": true, "herd_request_duration_seconds_bucket": true, "herd_queue_wait_seconds_bucket": true,
		"herd_worker_requests_total": true, "herd_worker_ollama_calls_total": true, "herd_worker_ollama_call_seconds_bucket": true,
		"herd_optimizer_breaker_state": true, "herd_dispatcher_fallbacks_total": true,
		"herd_worker_truncated_prompts_total": true, "herd_worker_num_ctx_above_model_total": true,
	}
	outcomeMetrics := map[string]bool{
		"herd_requests_total": true, "herd_dispatcher_requests_total": true, "herd_dispatcher_rejected_total": true,
		"herd_worker_requests_total": true, "herd_worker_ollama_calls_total": true,
	}
	sel := regexp.MustCompile(`(herd_\w+)(\{[^}]*\})?`)
	byOutcome := regexp.MustCompile(`by \(([^)]*)\)`)
	errRatio := false
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				w := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
				outcomes := false
				for _, m := range sel.FindAllStringSubmatch(tg.Expr, -1) {
					name, labels := m[1], m[2]
					if modelMetrics[name] && !strings.Contains(labels, `model=~"$model"`) {
						t.Errorf("%s: %s not filtered by $model: %s", w, name, tg.Expr)
					}
					if strings.HasPrefix(name, "herd_worker_") && !strings.Contains(labels, `worker=~"$worker"`) {
						t.Errorf("%s: %s not filtered by $worker: %s", w, name, tg.Expr)
					}
					if outcomeMetrics[name] {
						outcomes = true
						for _, old := range []string{"status", "code", "result"} {
							if regexp.MustCompile(`\b` + old + `\s*(=|!=|=~|!~)`).MatchString(labels) {
								t.Errorf("%s: %s selects %s; the outcome label is %s", w, name, old, reqmetrics.OutcomeLabel)
							}
						}
					}
					if name == "herd_requests_total" && strings.Contains(labels, reqmetrics.OutcomeLabel+`=~"`+reqmetrics.ErrorOutcomes()+`"`) {
						errRatio = true
					}
				}
				if outcomes {
					for _, by := range byOutcome.FindAllStringSubmatch(tg.Expr, -1) {
						for _, l := range strings.Split(by[1], ",") {
							if l := strings.TrimSpace(l); l == "status" || l == "code" || l == "result" {
								t.Errorf("%s: grouped by %s; the outcome label is %s", w, l, reqmetrics.OutcomeLabel)
							}
						}
					}
				}
			}
		}
	}
	walk(d.Panels)
	if !errRatio {
		t.Errorf("no query counts herd_requests_total{%s=~%q}, the outcomes the error-rate alert counts", reqmetrics.OutcomeLabel, reqmetrics.ErrorOutcomes())
	}
}
