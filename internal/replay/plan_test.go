package replay

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/wire"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func rec(ms int, agent string, p wire.Priority, model string) capture.Record {
	return capture.Record{
		Time: t0.Add(time.Duration(ms) * time.Millisecond), ID: agent + "-" + time.Duration(ms).String(),
		Priority: p, Agent: agent, Model: model, Body: json.RawMessage(`{"model":"` + model + `","prompt":"x"}`),
	}
}

// steps drains a plan and returns the offsets in ms and the agents.
func steps(t *testing.T, p *Plan) ([]float64, []string) {
	t.Helper()
	var offs []float64
	var agents []string
	for i := 0; ; i++ {
		st, ok := p.Next()
		if !ok {
			return offs, agents
		}
		if st.Seq != i {
			t.Fatalf("step %d has seq %d", i, st.Seq)
		}
		offs = append(offs, float64(st.Offset)/float64(time.Millisecond))
		agents = append(agents, st.Record.Agent)
	}
}

func TestPlanOffsets(t *testing.T) {
	recs := []capture.Record{ // out of time order on purpose
		rec(100, "b", wire.Normal, "m1"), rec(0, "a", wire.High, "m1"), rec(300, "a", wire.Low, "m2"), rec(200, "c", wire.High, "m2"),
	}
	tests := []struct {
		name  string
		cfg   PlanConfig
		want  []float64
		total int
	}{
		{"1x", PlanConfig{Speed: 1}, []float64{0, 100, 200, 300}, 4},
		{"4x", PlanConfig{Speed: 4}, []float64{0, 25, 50, 75}, 4},
		{"half", PlanConfig{Speed: 0.5}, []float64{0, 200, 400, 600}, 4},
		{"max", PlanConfig{Speed: MaxSpeed}, []float64{0, 0, 0, 0}, 4},
		{"duration", PlanConfig{Speed: 1, Duration: 200 * time.Millisecond}, []float64{0, 100}, 2},
		{"filter", PlanConfig{Speed: 1, Filter: Filter{Priorities: []string{"high"}}}, []float64{0, 200}, 2},
		{"filter model", PlanConfig{Speed: 1, Filter: Filter{Models: []string{"m2"}, Agents: []string{"a", "c"}}}, []float64{0, 100}, 2},
		{"filter pattern", PlanConfig{Speed: 1, Filter: Filter{Models: []string{"m*"}, Agents: []string{"[ab]"}}}, []float64{0, 100, 300}, 3},
		// One loop lasts the span (300ms) plus the mean gap (100ms).
		{"loop", PlanConfig{Speed: 2, Loop: true, Duration: 350 * time.Millisecond}, []float64{0, 50, 100, 150, 200, 250, 300}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan(recs, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Total(); got != tt.total {
				t.Errorf("Total = %d, want %d", got, tt.total)
			}
			got, _ := steps(t, p)
			if len(got) != len(tt.want) {
				t.Fatalf("offsets %v, want %v", got, tt.want)
			}
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > 1e-6 {
					t.Fatalf("offsets %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestPlanUnboundedLoop(t *testing.T) {
	p, err := NewPlan([]capture.Record{rec(0, "a", wire.High, "m")}, PlanConfig{Speed: 1, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total() != -1 {
		t.Fatalf("Total = %d, want -1", p.Total())
	}
	for i := range 3 {
		st, ok := p.Next()
		// A one-record capture loops once a second.
		if !ok || st.Offset != time.Duration(i)*time.Second || st.Loop != i {
			t.Fatalf("step %d = %+v, %v", i, st, ok)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	recs := []capture.Record{rec(0, "a", wire.High, "m")}
	if _, err := NewPlan(recs, PlanConfig{Speed: 1, Filter: Filter{Agents: []string{"zz"}}}); !errors.Is(err, ErrNoRecords) {
		t.Fatalf("empty selection: %v", err)
	}
	if _, err := NewPlan(recs, PlanConfig{}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("speed 0: %v", err)
	}
}

// TestPlanTies: records with one timestamp are ordered by the seed, but
// each agent's keep their capture order.
func TestPlanTies(t *testing.T) {
	var recs []capture.Record
	for i := range 4 {
		for _, a := range []string{"a", "b", "c"} {
			r := rec(0, a, wire.Normal, "m")
			r.ID = a + string(rune('0'+i))
			recs = append(recs, r)
		}
	}
	orders := map[string]bool{}
	for seed := range int64(8) {
		p, err := NewPlan(recs, PlanConfig{Speed: 1, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		again, _ := NewPlan(recs, PlanConfig{Speed: 1, Seed: seed})
		order := ""
		next := map[string]int{}
		for i, r := range p.Records() {
			if r.ID != again.Records()[i].ID {
				t.Fatalf("seed %d gives two orders", seed)
			}
			if want := r.Agent + string(rune('0'+next[r.Agent])); r.ID != want {
				t.Fatalf("seed %d: agent %s sends %s before %s", seed, r.Agent, r.ID, want)
			}
			next[r.Agent]++
			order += r.ID
		}
		orders[order] = true
	}
	if len(orders) < 2 {
		t.Fatalf("8 seeds gave one order")
	}
}

func TestPlanRawPayload(t *testing.T) {
	r := rec(0, "a", wire.High, "m")
	r.Body, r.Raw = json.RawMessage(`"not json {"`), true
	p, err := NewPlan([]capture.Record{r}, PlanConfig{Speed: 1})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := p.Next()
	if string(st.Payload) != "not json {" {
		t.Fatalf("payload %q", st.Payload)
	}
}

func TestParseFilter(t *testing.T) {
	f, err := ParseFilter([]string{"agent=a,priority=high", "agent=planner-*", "model=llama3.2:3b", "op=chat"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.String(); got != "agent=a,agent=planner-*,priority=high,model=llama3.2:3b,op=chat" {
		t.Fatalf("String = %q", got)
	}
	tests := []struct {
		rec  capture.Record
		want bool
	}{
		{capture.Record{Agent: "planner-7", Priority: wire.High, Model: "llama3.2:3b", Op: "chat"}, true},
		{capture.Record{Agent: "a", Priority: wire.High, Model: "llama3.2:3b", Op: "chat"}, true},
		{capture.Record{Agent: "b", Priority: wire.High, Model: "llama3.2:3b", Op: "chat"}, false},
		{capture.Record{Agent: "a", Priority: wire.Low, Model: "llama3.2:3b", Op: "chat"}, false},
		{capture.Record{Agent: "a", Priority: wire.High, Model: "llama3.2:3b", Op: "embed"}, false},
	}
	for _, tt := range tests {
		if got := f.Match(&tt.rec); got != tt.want {
			t.Errorf("Match(%+v) = %v", tt.rec, got)
		}
	}
	for _, bad := range []string{"agent", "agent=", "colour=red", "priority=urgent", "agent=[a"} {
		if _, err := ParseFilter([]string{bad}); !errors.Is(err, ErrBadFilter) {
			t.Errorf("ParseFilter(%q) = %v", bad, err)
		}
	}
}

func TestParseSpeed(t *testing.T) {
	for in, want := range map[string]float64{"1": 1, "0.5": 0.5, "10x": 10, "max": MaxSpeed, "MAX": MaxSpeed} {
		if got, err := ParseSpeed(in); err != nil || got != want {
			t.Errorf("ParseSpeed(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"0", "-1", "fast", "", "inf"} {
		if _, err := ParseSpeed(bad); !errors.Is(err, ErrBadSpeed) {
			t.Errorf("ParseSpeed(%q) = %v", bad, err)
		}
	}
	if FormatSpeed(MaxSpeed) != "max" || FormatSpeed(0.5) != "0.5x" {
		t.Fatal("FormatSpeed")
	}
}

func TestLoadFile(t *testing.T) {
	recs := []capture.Record{rec(0, "a", wire.High, "m"), rec(10, "b", wire.Low, "m")}
	dir := t.TempDir()
	for _, name := range []string{"c.jsonl", "c.jsonl.gz"} {
		var buf bytes.Buffer
		w := io.Writer(&buf)
		var gz *gzip.Writer
		if strings.HasSuffix(name, ".gz") {
			gz = gzip.NewWriter(&buf)
			w = gz
		}
		if err := capture.WriteJSONL(w, recs); err != nil {
			t.Fatal(err)
		}
		if gz != nil {
			_ = gz.Close()
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadFile(p)
		if err != nil || len(got) != 2 || got[1].Agent != "b" || !got[1].Time.Equal(recs[1].Time) {
			t.Fatalf("LoadFile(%s) = %+v, %v", name, got, err)
		}
	}
	bad := filepath.Join(dir, "bad.jsonl")
	_ = os.WriteFile(bad, []byte("{\"t\":\"2025-01-01T00:00:00Z\",\"priority\":\"high\",\"agent\":\"a\",\"body\":{}}\nnot json\n"), 0o644)
	if _, err := LoadFile(bad); !errors.Is(err, capture.ErrBadRecord) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad file: %v", err)
	}
}
