package warm

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/wire"
)

// rec returns a captured request of agent with body.
func rec(agent, body string, hdr ...string) capture.Record {
	r := capture.Record{Time: time.Now(), Agent: agent, Priority: wire.High, Body: json.RawMessage(body)}
	for i := 0; i+1 < len(hdr); i += 2 {
		if r.Headers == nil {
			r.Headers = map[string]string{}
		}
		r.Headers[hdr[i]] = hdr[i+1]
	}
	return r
}

func TestSelect(t *testing.T) {
	recs := []capture.Record{
		rec("a", `{"model":"m","prompt":"t0","options":{"temperature":0}}`),
		rec("a", `{"model":"m", "prompt":"t0", "options":{"temperature":0}}`), // the same, other spacing
		rec("b", `{"model":"m","prompt":"t0","options":{"temperature":0}}`),   // another agent
		rec("a", `{"model":"m","prompt":"seeded","options":{"temperature":0.8,"seed":7}}`),
		rec("a", `{"model":"m","input":["x"]}`),
		rec("a", `{"model":"m","prompt":"sampled","options":{"temperature":0.8}}`),
		rec("a", `{"model":"m","prompt":"default temperature"}`),
		rec("a", `{"model":"m","prompt":"s","stream":true,"options":{"temperature":0}}`),
		rec("a", `{"model":"m","prompt":"o","options":{"temperature":0}}`, wire.HdrCache, "off"),
		rec("a", `{"model":"m","bogus":1}`),
	}
	todo, rep := Select(recs)
	if len(todo) != 4 || rep.Records != 10 {
		t.Fatalf("selected %d of %d, want 4 of 10: %+v", len(todo), rep.Records, todo)
	}
	want := map[string]int{SkipRepeat: 1, SkipNotReproducible: 2, SkipStreaming: 1, SkipCacheOff: 1, SkipInvalid: 1}
	for k, v := range want {
		if rep.Skipped[k] != v {
			t.Errorf("skipped %v, want %v", rep.Skipped, want)
			break
		}
	}
}

// TestRunCounts: against a fake ask door, Run sends each selected
// request once, at low priority as its agent with its cache TTL, and
// counts added, cached and failed answers and the added ones' cost.
func TestRunCounts(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect(t)
	var mu sync.Mutex
	var subjects []string
	ttls := map[string]string{}
	sub, err := nc.Subscribe(wire.AskPrefix+".>", func(m *nats.Msg) {
		var b struct{ Prompt string }
		_ = json.Unmarshal(m.Data, &b)
		mu.Lock()
		subjects = append(subjects, m.Subject)
		ttls[b.Prompt] = m.Header.Get(wire.HdrCacheTTL)
		mu.Unlock()
		r := nats.NewMsg(m.Reply)
		r.Header.Set(wire.HdrStatus, "200")
		switch b.Prompt {
		case "warm":
			r.Header.Set(wire.HdrCache, wire.CacheHit)
			r.Data = []byte(`{"response":"x","done":true}`)
		case "broken":
			r.Header.Set(wire.HdrStatus, "503")
			r.Data = []byte(`{"error":"no","code":"backend_unavailable","retryable":true}`)
		default:
			r.Header.Set(wire.HdrCache, wire.CacheMiss)
			r.Data = []byte(`{"response":"x","done":true,"total_duration":1500000000,"prompt_eval_count":10,"eval_count":5}`)
		}
		_ = m.RespondMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	recs := []capture.Record{
		rec("a", `{"model":"m","prompt":"cold1","options":{"temperature":0}}`, wire.HdrCacheTTL, "1h"),
		rec("b", `{"model":"m","prompt":"cold2","options":{"seed":3}}`),
		rec("a", `{"model":"m","prompt":"warm","options":{"temperature":0}}`),
		rec("a", `{"model":"m","prompt":"broken","options":{"temperature":0}}`),
		rec("a", `{"model":"m","prompt":"sampled"}`),
	}
	var progress bytes.Buffer
	cfg := DefaultConfig()
	cfg.Progress = &progress
	rep, err := Run(t.Context(), nc, recs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 4 || rep.Added != 2 || rep.Cached != 1 || rep.Failed["backend_unavailable"] != 1 || rep.Skipped[SkipNotReproducible] != 1 {
		t.Fatalf("report %+v", rep)
	}
	if rep.OllamaSeconds != 3 || rep.PromptTokens != 20 || rep.EvalTokens != 10 {
		t.Errorf("cost %.1fs %d+%d tokens, want 3s 20+10", rep.OllamaSeconds, rep.PromptTokens, rep.EvalTokens)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range subjects {
		if !strings.HasPrefix(s, wire.AskPrefix+".low.") {
			t.Errorf("sent on %s, want low priority", s)
		}
	}
	if ttls["cold1"] != "1h" || ttls["cold2"] != "" {
		t.Errorf("cache TTLs sent %v", ttls)
	}
	if !strings.Contains(progress.String(), "done 4/4  added 2  cached 1  failed 1") {
		t.Errorf("last progress line: %q", progress.String())
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	t.Log(text.String())
	if !strings.Contains(text.String(), "2 entries added, 1 already cached") {
		t.Errorf("text %q", text.String())
	}
}
