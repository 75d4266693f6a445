package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/policy"
	"github.com/sutazai/herd/internal/wire"
	"github.com/sutazai/herd/internal/worker"
)

// TestRealUnlistedModelOneWindow: a model the configuration never names
// (no models[] entry, no optimizer decision) runs in one window, its own
// (the Modelfile's num_ctx, read from Ollama's /api/show), whatever its
// requests ask for: agents' num_ctx 512, 1024, 2048 and two "auto"
// profiles that add num_ctx 512 and 1024. Ollama loads herd-tiny once:
// every answer after the first has a load_duration far below that
// first load, and /api/ps lists the model once. The worker shows the
// window it runs the model in (herd_worker_num_ctx), so dashboards and
// the optimizer (whose request events carry it) see it too.
func TestRealUnlistedModelOneWindow(t *testing.T) {
	inst := startRealOllama(t, managed.Config{TestModels: []string{tinyModel}})
	opts := realStackOpts(inst.URL(), func(c *worker.Config) { c.Models = []string{"unused"} })
	opts.dcfg = func(c *dispatcherConfig) {
		c.Auto.Profiles = []policy.Profile{
			{Name: "small", Agents: []string{"small-*"}, Models: []string{tinyModel}, PriorityCeiling: wire.High, NumCtx: 512},
			{Name: "mid", Agents: []string{"mid-*"}, Models: []string{tinyModel}, PriorityCeiling: wire.High, NumCtx: 1024},
		}
		c.Auto.DefaultProfile = ""
	}
	s := newStack(t, opts)
	reg := prometheus.NewRegistry()
	wc := worker.DefaultConfig()
	wc.ID, wc.PollInterval, wc.CPUBudget = "window1", 50*time.Millisecond, 1
	wc.Models, wc.NumCtx = []string{tinyModel}, nil // herd is never told about herd-tiny's window
	s.startWorkerOn(wc, reg)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, ok := s.disp.Models()[tinyModel]; !ok {
			return errors.New("herd-tiny not registered yet")
		}
		return nil
	})
	agents := map[string]*client.Client{}
	for _, a := range []string{"plain", "small-1", "mid-1"} {
		agents[a] = s.client(client.WithAgent(a))
	}
	ask := func(agent, model, opts string, i int) *api.GenerateResponse {
		t.Helper()
		body := fmt.Sprintf(`{"model":%q,"prompt":"mixed window %d","options":{"num_predict":4%s}}`, model, i, opts)
		raw, _, err := agents[agent].Raw(t.Context(), []byte(body), client.Cache(wire.CacheOff))
		if err != nil {
			t.Fatalf("%s as %s: %v", body, agent, err)
		}
		var r api.GenerateResponse
		if err := json.Unmarshal(raw, &r); err != nil || !r.Done {
			t.Fatalf("%s: answer %s: %v", body, raw, err)
		}
		return &r
	}
	first := ask("plain", tinyModel, "", 0)
	load := first.LoadDuration
	if load < 50*time.Millisecond {
		t.Fatalf("the first request's load_duration is %v: it did not load the model, so reloads cannot be told apart", load)
	}
	mix := []struct{ agent, model, opts string }{
		{"plain", tinyModel, `,"num_ctx":512`},
		{"small-1", "auto", ""},
		{"plain", tinyModel, `,"num_ctx":1024`},
		{"mid-1", "auto", ""},
		{"plain", tinyModel, `,"num_ctx":2048`},
		{"small-1", "auto", ""},
		{"plain", tinyModel, ""},
		{"mid-1", "auto", ""},
	}
	var reloads []string
	for i, m := range mix {
		r := ask(m.agent, m.model, m.opts, i+1)
		if r.LoadDuration > load/3 {
			reloads = append(reloads, fmt.Sprintf("%s %s%s (load_duration %v)", m.agent, m.model, m.opts, ms(r.LoadDuration)))
		}
	}
	if len(reloads) > 0 {
		t.Errorf("herd-tiny (first load %v) was loaded again by %v", ms(load), reloads)
	}
	ps, err := directClient(t, inst.URL()).ListRunning(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, m := range ps.Models {
		if strings.TrimSuffix(m.Name, ":latest") == tinyModel {
			listed = append(listed, m.Name)
		}
	}
	if len(listed) != 1 {
		t.Errorf("/api/ps lists herd-tiny %d times (%v), want once", len(listed), ps.Models)
	}
	if got := scrape(t, reg).value("herd_worker_num_ctx", "model="+tinyModel); got != realNumCtx {
		t.Errorf("herd_worker_num_ctx{model=herd-tiny} = %v, want the model's own window %d (its Modelfile's num_ctx)", got, realNumCtx)
	}
}
