package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/capture"
	"github.com/sutazai/herd/internal/warm"
	"github.com/sutazai/herd/internal/wire"
)

// TestCacheWarmCommand: `herd cache warm FILE` sends the reproducible
// records to the ask door (a fake here), prints what it added and cost
// and keeps the JSON report; `--since` reads HERD_CAPTURE; no source is a
// usage error.
func TestCacheWarmCommand(t *testing.T) {
	srv := provisioned(t)
	nc, _ := srv.Connect(t)
	sub, err := nc.Subscribe(wire.AskPrefix+".low.>", func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(wire.HdrStatus, "200")
		r.Header.Set(wire.HdrCache, wire.CacheMiss)
		r.Data = []byte(`{"done":true,"total_duration":2000000000,"prompt_eval_count":4,"eval_count":6}`)
		_ = m.RespondMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The fake door must be subscribed in the server before herd asks (a CI
	// run: no_responders).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	recs := []capture.Record{
		{Time: time.Now(), Agent: "a", Priority: wire.High, Body: json.RawMessage(`{"model":"m","prompt":"p","options":{"temperature":0}}`)},
		{Time: time.Now(), Agent: "a", Priority: wire.High, Body: json.RawMessage(`{"model":"m","prompt":"q"}`)},
	}
	dir := t.TempDir()
	file, report := filepath.Join(dir, "c.jsonl"), filepath.Join(dir, "warm.json")
	var buf bytes.Buffer
	if err := capture.WriteJSONL(&buf, recs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := mustHerd(t, "cache", "warm", "--nats", srv.URL, "-q", "--json", report, file)
	if !strings.Contains(out, "2 records, 1 sent, 1 entries added, 0 already cached") || !strings.Contains(out, "cost: 2s of Ollama time, 4 prompt tokens, 6 generated tokens") ||
		!strings.Contains(out, "not_reproducible 1") {
		t.Errorf("output %q", out)
	}
	var rep warm.Report
	if err := json.Unmarshal(readFile(t, report), &rep); err != nil || rep.Added != 1 || rep.OllamaSeconds != 2 {
		t.Errorf("json report %+v (%v)", rep, err)
	}
	out, _ = mustHerd(t, "cache", "warm", "--nats", srv.URL, "-q", "--since", "24h")
	if !strings.Contains(out, "0 records, 0 sent") {
		t.Errorf("from the empty stream: %q", out)
	}
	if _, _, err := herd(t, "", "cache", "warm", "--nats", srv.URL); exitCode(err) != exitUsage {
		t.Errorf("no source: exit %d (%v), want %d", exitCode(err), err, exitUsage)
	}
}
