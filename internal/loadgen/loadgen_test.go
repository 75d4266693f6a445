package loadgen_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/loadgen"
	"github.com/sutazai/herd/internal/request"
	"github.com/sutazai/herd/internal/wire"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func generate(t *testing.T, f loadgen.Fleet, o loadgen.Options) []capture.Record {
	t.Helper()
	if o.Start.IsZero() {
		o.Start = start
	}
	recs, err := loadgen.Generate(f, o)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestDefaultFleet(t *testing.T) {
	f := loadgen.DefaultFleet()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(f.Profiles) != 3 || f.Agents() != 69 || f.Consumers() != 174 {
		t.Fatalf("default fleet: %d profiles, %d agents, %d consumers; want 3, 69, 174", len(f.Profiles), f.Agents(), f.Consumers())
	}
	names := []string{}
	for _, p := range f.Profiles {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"high-throughput", "complex-reasoning", "utility"}) {
		t.Fatalf("profiles = %v", names)
	}
	// Every agent of the fleet shows up in a long enough run, with a valid
	// agent name.
	agents := map[string]bool{}
	for _, r := range generate(t, f, loadgen.Options{Duration: time.Hour}) {
		if !wire.ValidToken(r.Agent) {
			t.Fatalf("agent name %q is not a valid token", r.Agent)
		}
		agents[r.Agent] = true
	}
	if len(agents) != 69 {
		t.Fatalf("%d distinct agents sent requests in an hour, want 69", len(agents))
	}
}

func TestSameSeedSameBytes(t *testing.T) {
	write := func(seed uint64) []byte {
		g, err := loadgen.New(loadgen.DefaultFleet(), loadgen.Options{Seed: seed, Start: start, Duration: 2 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		n, err := loadgen.Write(&b, g, nil)
		if err != nil || n == 0 {
			t.Fatalf("write: %d records, %v", n, err)
		}
		return b.Bytes()
	}
	a, b := write(7), write(7)
	if !bytes.Equal(a, b) {
		t.Fatal("the same seed gave different bytes")
	}
	if bytes.Equal(a, write(8)) {
		t.Fatal("different seeds gave the same bytes")
	}
	// The output is a capture file like any other.
	var recs []capture.Record
	if err := capture.ReadJSONL(bytes.NewReader(a), func(r capture.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := capture.WriteJSONL(&again, recs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, again.Bytes()) {
		t.Fatal("capture.WriteJSONL of the records read back differs from loadgen.Write")
	}
}

func TestArrivalsSortedWithinDuration(t *testing.T) {
	const d = 5 * time.Minute
	recs := generate(t, loadgen.DefaultFleet(), loadgen.Options{Seed: 3, Duration: d})
	ids := map[string]bool{}
	for i, r := range recs {
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Fatalf("record %d at %v is before record %d at %v", i, r.Time, i-1, recs[i-1].Time)
		}
		if r.Time.Before(start) || !r.Time.Before(start.Add(d)) {
			t.Fatalf("record %d at %v is outside [%v, %v)", i, r.Time, start, start.Add(d))
		}
		if ids[r.ID] || !wire.ValidToken(r.ID) {
			t.Fatalf("record %d: id %q repeated or not a valid token", i, r.ID)
		}
		ids[r.ID] = true
	}
	// About rate × duration requests (Poisson: within 5 standard deviations).
	want := loadgen.DefaultFleet().Rate() * d.Seconds()
	if got := float64(len(recs)); math.Abs(got-want) > 5*math.Sqrt(want) {
		t.Fatalf("%v requests in %v, want about %.0f", got, d, want)
	}
	// RateScale scales it.
	scaled := generate(t, loadgen.DefaultFleet(), loadgen.Options{Seed: 3, Duration: d, RateScale: 0.25})
	if got := float64(len(scaled)); math.Abs(got-want/4) > 5*math.Sqrt(want/4) {
		t.Fatalf("rate scale 0.25: %v requests, want about %.0f", got, want/4)
	}
	capped := generate(t, loadgen.DefaultFleet(), loadgen.Options{Seed: 3, Duration: d, MaxRequests: 10})
	if len(capped) != 10 || !reflect.DeepEqual(capped, recs[:10]) {
		t.Fatalf("max requests 10 gave %d records, not the first 10", len(capped))
	}
}

// TestMixMatchesProfile: priority, model and op mixes and the repeat ratio
// of each profile match its weights.
func TestMixMatchesProfile(t *testing.T) {
	f := loadgen.DefaultFleet()
	recs := generate(t, f, loadgen.Options{Seed: 11, Duration: time.Hour})
	for _, p := range f.Profiles {
		t.Run(p.Name, func(t *testing.T) {
			var mine []capture.Record
			for _, r := range recs {
				if strings.HasPrefix(r.Agent, p.Name+"-") {
					mine = append(mine, r)
				}
			}
			n := float64(len(mine))
			if n < 500 {
				t.Fatalf("only %v requests", n)
			}
			// Four standard deviations of a proportion.
			near := func(what string, got, want float64) {
				t.Helper()
				if tol := 4*math.Sqrt(want*(1-want)/n) + 0.005; math.Abs(got-want) > tol {
					t.Errorf("%s: %.3f, want %.3f ± %.3f", what, got, want, tol)
				}
			}
			byPrio := map[wire.Priority]float64{}
			byModel := map[string]float64{}
			seen := map[string]bool{}
			repeats := 0.0
			for _, r := range mine {
				byPrio[r.Priority]++
				byModel[r.Model]++
				if seen[string(r.Body)] {
					repeats++
					if !repeatable(t, r) {
						t.Fatalf("repeated body is not at temperature 0: %s", r.Body)
					}
				}
				seen[string(r.Body)] = true
			}
			sum := 0.0
			for _, w := range p.Priorities {
				sum += w
			}
			for _, prio := range wire.Priorities {
				near("priority "+string(prio), byPrio[prio]/n, p.Priorities[prio]/sum)
			}
			sum = 0
			for _, w := range p.Models {
				sum += w
			}
			for m, w := range p.Models {
				near("model "+m, byModel[m]/n, w/sum)
			}
			near("repeat ratio", repeats/n, loadgen.DefaultRepeatRatio)
		})
	}
}

// repeatable reports whether a body is an embedding or at temperature 0.
func repeatable(t *testing.T, r capture.Record) bool {
	t.Helper()
	var b struct {
		Options map[string]float64 `json:"options"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatal(err)
	}
	return r.Op == loadgen.OpEmbed || (b.Options != nil && b.Options["temperature"] == 0)
}

// TestBodiesAreValidRequests: herd accepts every generated body, and the
// record's model and op are what herd decodes.
func TestBodiesAreValidRequests(t *testing.T) {
	recs := generate(t, loadgen.DefaultFleet(), loadgen.Options{Seed: 5, Duration: 10 * time.Minute})
	ops := map[string]int{}
	for _, r := range recs {
		req, err := request.Decode(r.Payload(), request.Limits{MaxBytes: 512 << 10})
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.ID, err, r.Body)
		}
		if req.Model != r.Model || string(req.Op) != r.Op || req.Stream {
			t.Fatalf("%s: decoded model %q op %q stream %v, record says %q %q", r.ID, req.Model, req.Op, req.Stream, r.Model, r.Op)
		}
		ops[r.Op]++
		if strings.HasPrefix(r.Agent, "complex-reasoning-") {
			if r.Headers[wire.HdrTimeout] != "10m0s" {
				t.Fatalf("reasoning request without its timeout header: %v", r.Headers)
			}
			if req.Op != request.OpEmbed && options(req)["num_ctx"] != float64(8192) {
				t.Fatalf("reasoning request without num_ctx 8192: %s", r.Body)
			}
		}
	}
	for _, op := range []string{loadgen.OpGenerate, loadgen.OpChat, loadgen.OpEmbed} {
		if ops[op] == 0 {
			t.Errorf("no %s requests", op)
		}
	}
}

func options(r *request.Request) map[string]any {
	switch {
	case r.Generate != nil:
		return r.Generate.Options
	case r.Chat != nil:
		return r.Chat.Options
	}
	return r.Embed.Options
}

func TestRepeatScopeAgent(t *testing.T) {
	f := loadgen.Fleet{Profiles: []loadgen.Profile{{
		Name: "solo", Agents: 5, Rate: 2, Models: map[string]float64{"m": 1},
		PromptWords: loadgen.Words{Median: 5}, RepeatScope: loadgen.ScopeAgent, RepeatRatio: ptr(0.5),
	}}}
	recs := generate(t, f, loadgen.Options{Seed: 1, Duration: 10 * time.Minute})
	owner := map[string]string{}
	repeats := 0
	for _, r := range recs {
		if a, ok := owner[string(r.Body)]; ok {
			repeats++
			if a != r.Agent {
				t.Fatalf("agent %s repeats a body of agent %s with repeat_scope agent", r.Agent, a)
			}
			continue
		}
		owner[string(r.Body)] = r.Agent
	}
	if got := float64(repeats) / float64(len(recs)); math.Abs(got-0.5) > 0.05 {
		t.Fatalf("repeat ratio %.3f, want 0.5", got)
	}
	// No repeats at all with a ratio of 0.
	f.Profiles[0].RepeatRatio = ptr(0.0)
	seen := map[string]bool{}
	for _, r := range generate(t, f, loadgen.Options{Seed: 1, Duration: time.Minute}) {
		if seen[string(r.Body)] {
			t.Fatalf("repeat with repeat_ratio 0: %s", r.Body)
		}
		seen[string(r.Body)] = true
	}
}

func ptr[T any](v T) *T { return &v }

const userProfile = `
# two kinds of agents
repeat_ratio: 0.2
profiles:
  - name: chatty
    agents: 3
    concurrency: 4
    rate: 0.5
    priorities: {high: 1, normal: 1}
    models: {"llama3.2:3b": 1}
    ops: {chat: 1}
    prompt_words: {median: 12, sigma: 0.3, min: 4, max: 50}
    num_predict: 16
    timeout: 30s
  - name: embedder
    agents: 2
    rate: 1
    models: {nomic-embed-text: 1}
    ops: {embed: 1}
    prompt_words: {median: 8}
    repeat_ratio: 0.5
`

func TestLoadUserProfile(t *testing.T) {
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(yamlPath, []byte(userProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := loadgen.Load(yamlPath)
	if err != nil {
		t.Fatal(err)
	}
	if f.Agents() != 5 || f.Consumers() != 14 || f.Profiles[0].Timeout != 30*time.Second {
		t.Fatalf("loaded %+v: %d agents, %d consumers", f, f.Agents(), f.Consumers())
	}
	recs := generate(t, f, loadgen.Options{Duration: time.Minute})
	agents := map[string]bool{}
	for _, r := range recs {
		agents[r.Agent] = true
		if strings.HasPrefix(r.Agent, "embedder-") && (r.Op != "embed" || r.Model != "nomic-embed-text") {
			t.Fatalf("embedder sent %s to %s", r.Op, r.Model)
		}
		if r.Priority == wire.Low {
			t.Fatal("low priority request from a profile without low")
		}
	}
	if len(agents) != 5 || !agents["chatty-01"] || !agents["embedder-02"] {
		t.Fatalf("agents = %v", agents)
	}

	// The same fleet as JSON, and the default fleet's own printout, load.
	jsonPath := filepath.Join(dir, "fleet.json")
	js := `{"profiles": [{"name": "j", "agents": 1, "rate": 1, "models": {"m": 1}, "prompt_words": {"median": 3}, "timeout": "1m"}]}`
	if err := os.WriteFile(jsonPath, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	if jf, err := loadgen.Load(jsonPath); err != nil || jf.Profiles[0].Timeout != time.Minute {
		t.Fatalf("json profile: %+v, %v", jf, err)
	}
	out, err := loadgen.DefaultFleet().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := loadgen.Parse(out)
	if err != nil {
		t.Fatalf("parse printed default fleet: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, loadgen.DefaultFleet()) {
		t.Fatalf("printed default fleet reads back as\n%+v", back)
	}
}

func TestBadProfiles(t *testing.T) {
	base := "profiles:\n  - name: p\n    agents: 1\n    rate: 1\n    models: {m: 1}\n    prompt_words: {median: 5}\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"empty", "", "empty"},
		{"no profiles", "profiles: []", "no profiles"},
		{"unknown key", base + "    colour: red\n", "colour"},
		{"bad name", strings.Replace(base, "name: p", "name: a.b", 1), "name"},
		{"no agents", strings.Replace(base, "agents: 1", "agents: 0", 1), "agents"},
		{"no rate", strings.Replace(base, "rate: 1", "rate: 0", 1), "rate"},
		{"no models", strings.Replace(base, "models: {m: 1}", "models: {}", 1), "models"},
		{"bad priority", base + "    priorities: {urgent: 1}\n", "urgent"},
		{"bad op", base + "    ops: {complete: 1}\n", "complete"},
		{"zero weights", base + "    ops: {chat: 0}\n", "every weight is 0"},
		{"negative weight", base + "    priorities: {high: -1, low: 2}\n", "0 or more"},
		{"bad ratio", base + "    repeat_ratio: 1\n", "repeat_ratio"},
		{"bad scope", base + "    repeat_scope: world\n", "repeat_scope"},
		{"sampled without temperature", base + "    sampled: 0.5\n", "temperature"},
		{"bad num_ctx", base + "    num_ctx: 100\n", "num_ctx"},
		{"no median", strings.Replace(base, "median: 5", "median: 0", 1), "median"},
		{"max below min", strings.Replace(base, "median: 5", "median: 5, min: 10, max: 5", 1), "max"},
		{"duplicate", base + strings.TrimPrefix(base, "profiles:\n"), "twice"},
		{"bad duration", base + "    timeout: soon\n", "soon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadgen.Parse([]byte(tc.text))
			if !errors.Is(err, loadgen.ErrProfile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrProfile mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := loadgen.Parse([]byte(base)); err != nil {
		t.Fatalf("base profile: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	f := loadgen.DefaultFleet()
	for name, o := range map[string]loadgen.Options{
		"no start":       {Duration: time.Second},
		"no duration":    {Start: start},
		"negative scale": {Start: start, Duration: time.Second, RateScale: -1},
		"negative max":   {Start: start, Duration: time.Second, MaxRequests: -1},
	} {
		if _, err := loadgen.New(f, o); !errors.Is(err, loadgen.ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
}

func TestMapModels(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want []string
	}{
		{"herd-tiny", []string{"herd-tiny"}},
		{"*=herd-tiny", []string{"herd-tiny"}},
		{"deepseek-r1:8b=qwen3:4b", []string{"herd-tiny", "llama3.2:3b", "qwen3:4b", "tinyllama"}},
		{"llama3.2:3b=herd-tiny, *=tinyllama", []string{"herd-tiny", "tinyllama"}},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			m, err := loadgen.ParseModelMap(tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			f, err := loadgen.DefaultFleet().MapModels(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Models(); !slices.Equal(got, tc.want) {
				t.Fatalf("models = %v, want %v", got, tc.want)
			}
			for _, r := range generate(t, f, loadgen.Options{Duration: time.Minute}) {
				if !slices.Contains(tc.want, r.Model) || !strings.Contains(string(r.Body), `"model":"`+r.Model+`"`) {
					t.Fatalf("request for %q: %s", r.Model, r.Body)
				}
			}
		})
	}
	// The mapping leaves the original alone, and weights of merged models add up.
	f := loadgen.DefaultFleet()
	all, _ := f.MapModels(map[string]string{"*": "x"})
	if w := all.Profiles[0].Models["x"]; math.Abs(w-1) > 1e-9 || f.Profiles[0].Models["herd-tiny"] != 0.3 {
		t.Fatalf("merged weight %v; original %v", w, f.Profiles[0].Models)
	}
	if _, err := f.MapModels(map[string]string{"llama3:3b": "x"}); !errors.Is(err, loadgen.ErrProfile) {
		t.Fatalf("mapping a model the fleet does not use: %v", err)
	}
	for _, bad := range []string{"a=", "=b", "a=b,a=c", "a=b,,c=d"} {
		if _, err := loadgen.ParseModelMap(bad); err == nil {
			t.Errorf("ParseModelMap(%q) accepted", bad)
		}
	}
}
