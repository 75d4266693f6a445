package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sutazai/herd/internal/ollama"
	"github.com/sutazai/herd/internal/worker"
)

// startWorkerOn starts a worker like startWorker, with its metrics on reg.
func (s *stack) startWorkerOn(wc worker.Config, reg prometheus.Registerer) *runningWorker {
	s.t.Helper()
	nc, err := nats.Connect(s.srv.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	oc, err := ollama.NewClient(s.ollamaURL, time.Minute)
	if err != nil {
		s.t.Fatal(err)
	}
	w, err := worker.New(s.t.Context(), wc, nc, oc, s.defs, s.log, reg)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{w: w, nc: nc, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(rw.done); _ = w.Run(ctx) }()
	s.mu.Lock()
	s.workers = append(s.workers, rw)
	s.mu.Unlock()
	return rw
}

// exposition is one scrape of /metrics, parsed.
type exposition struct {
	text     string
	families map[string]*dto.MetricFamily
}

// scrape fetches /metrics from reg through promhttp, as Prometheus would.
func scrape(t *testing.T, reg *prometheus.Registry) *exposition {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return &exposition{text: string(b), families: fams}
}

// value returns the value of the series of name whose labels include
// want ("k=v" pairs); histograms give their sample count. Missing is -1.
func (e *exposition) value(name string, want ...string) float64 {
	mf := e.families[name]
	if mf == nil {
		return -1
	}
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			return m.GetUntyped().GetValue()
		}
	}
	return -1
}

// sum adds the values (histograms: sample counts) of every series of name
// whose labels include want.
func (e *exposition) sum(name string, want ...string) float64 {
	mf := e.families[name]
	total := 0.0
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func hasLabels(m *dto.Metric, want []string) bool {
	have := map[string]string{}
	for _, lp := range m.GetLabel() {
		have[lp.GetName()] = lp.GetValue()
	}
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		if have[k] != v {
			return false
		}
	}
	return true
}

// promtool returns the repository's bin/promtool, or "" when there is none.
func promtool(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "promtool")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// checkExposition runs `promtool check metrics` on text when the
// repository has bin/promtool.
func checkExposition(t *testing.T, text string) {
	t.Helper()
	p := promtool(t)
	if p == "" {
		t.Log("bin/promtool not found at the repository root; skipping promtool check metrics")
		return
	}
	cmd := exec.CommandContext(t.Context(), p, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
