package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/control"
	"github.com/sutazai/herd/internal/events"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/provision"
	"github.com/sutazai/herd/internal/wire"
)

// TestOnceCommand runs the optimizer binary with --once: the report of
// the events and decisions in NATS is printed as text and JSON and stored
// in HERD_REPORTS; --once without a report is a usage error.
func TestOnceCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the optimizer")
	}
	bin := filepath.Join(t.TempDir(), "optimizer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	srv := natstest.Start(t)
	srv.Provision(t, provision.Overrides{})
	nc, js := srv.Connect(t)
	pub, err := events.NewPublisher(nc, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 20 {
		pub.Request(&events.Request{At: now, ID: fmt.Sprint("r", i), Model: "tiny", Priority: "normal", Agent: "a", Op: "generate",
			Status: 200, QueueMs: int64(i), TotalMs: int64(100 + i), OllamaMs: 90, PromptTok: 100 + 10*i, EvalTok: 8, NumCtx: 2048, BatchSize: 2, Worker: "w1"})
	}
	for range 10 {
		pub.Batch(&events.Batch{At: now, Model: "tiny", Priority: "normal", Size: 2, Fill: 2.0 / 16})
	}
	kv, err := js.KeyValue(t.Context(), wire.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	b := control.NumCtx{Model: "tiny", NumCtx: 2048, At: now, Reason: "first num_ctx"}
	if _, err := kv.Put(t.Context(), control.NumCtxKey("tiny"), b.Marshal()); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		st, err := js.Stream(t.Context(), wire.StreamMetrics)
		if err != nil {
			return err
		}
		if info, err := st.Info(t.Context()); err != nil || info.State.Msgs < 30 {
			return fmt.Errorf("metrics stored: %v %v", info, err)
		}
		return nil
	})

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "--nats", srv.URL, "--once", "--batch", "--context", "--window", "1m", "--json", "-")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("optimizer --once: %v\n%s", err, stderr.String())
	}
	text, js1, ok := strings.Cut(stdout.String(), "\n{\n")
	if !ok {
		t.Fatalf("no JSON after the text:\n%s", stdout.String())
	}
	var r optimizer.OnceReport
	if err := json.Unmarshal([]byte("{\n"+js1), &r); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, js1)
	}
	if r.Kind != optimizer.KindAll || r.Batch == nil || r.Context == nil || r.Performance != nil || r.Stored == 0 {
		t.Errorf("report kind %q, batch %v, context %v, performance %v, stored %d", r.Kind, r.Batch, r.Context, r.Performance, r.Stored)
	}
	if n := len(r.Batch.Rows); n == 0 || r.Batch.Rows[n-1].Batches != 10 || r.Batch.Rows[n-1].Requests != 20 || r.Batch.Rows[n-1].QueueP95Ms != 18 {
		t.Errorf("batch figures %+v, want 10 batches of 2 and queue p95 18 ms", r.Batch.Rows)
	}
	if len(r.Context.Rows) != 1 || r.Context.Rows[0].Prompts != 20 || r.Context.Rows[0].Max != 290 || r.Context.Rows[0].Decided != 2048 {
		t.Errorf("context rows %+v, want 20 prompts up to 290 tokens, decided 2048", r.Context.Rows)
	}
	if len(r.Decisions) != 1 || r.Decisions[0].Kind != "numctx" || r.Decisions[0].Reason != "first num_ctx" {
		t.Errorf("decisions %+v", r.Decisions)
	}
	for _, want := range []string{"batches (batch_size 16", "context windows", "numctx     tiny", "dispatcher.max_wait", "stored in HERD_REPORTS"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	stored, err := optimizer.LastReport(t.Context(), js, optimizer.KindAll)
	if err != nil || stored.Stored != r.Stored || stored.Context.Rows[0] != r.Context.Rows[0] {
		t.Errorf("stored report %+v %v, want the printed one", stored, err)
	}

	out, err := exec.Command(bin, "--nats", srv.URL, "--once").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--once needs a report") {
		t.Errorf("--once alone: %v %s, want exit 2 and the usage", err, out)
	}
}
