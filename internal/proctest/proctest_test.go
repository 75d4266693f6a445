package proctest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// start starts name with args and env (added to the test's) for the rest
// of the test (harness.Start).
func start(t *testing.T, env []string, name string, args ...string) *harness.Proc {
	t.Helper()
	return harness.Start(t, &harness.Proc{Name: filepath.Base(name), Path: name, Args: args, Env: env})
}

// stop sends SIGTERM and returns the exit error; the test fails when the
// process is still running 30s later.
func stop(t *testing.T, p *harness.Proc) error {
	t.Helper()
	err, ok := p.Stop(30 * time.Second)
	if !ok {
		t.Fatalf("%s did not stop within 30s of SIGTERM", p.Path)
	}
	return err
}

// TestHerdUpWithNATSCLI: herd up (embedded NATS) answers a plain
// `nats request` from the real nats CLI with Ollama's JSON, herd ask prints
// an answer, and SIGTERM stops it cleanly.
func TestHerdUpWithNATSCLI(t *testing.T) {
	natsCLI := testbin.Tool(t, "nats")
	bin := testbin.Binaries(t)
	fake := ollamatest.New(t, ollamatest.WithModels("herd-tiny"))
	port := testbin.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	up := start(t, nil, filepath.Join(bin, "herd"), "up", "--data", t.TempDir(), "--ollama", fake.URL,
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", port), "--http", fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t)))
	up.WaitOutput(t, "ready on "+url, 30*time.Second)

	out, err := exec.Command(natsCLI, "--server", url, "request", "--timeout", "20s", "herd.ask.high.me",
		`{"model":"herd-tiny","prompt":"hi from the cli"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("nats request: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "Herd-Status: 200") {
		t.Fatalf("no Herd-Status 200 in:\n%s", text)
	}
	var resp api.GenerateResponse
	line := text[strings.Index(text, "{\"model\""):]
	if err := json.NewDecoder(strings.NewReader(line)).Decode(&resp); err != nil {
		t.Fatalf("answer is not Ollama JSON: %v\n%s", err, text)
	}
	if resp.Response != "echo: hi from the cli" || !resp.Done {
		t.Fatalf("answer = %+v", resp)
	}

	ask, err := exec.Command(filepath.Join(bin, "herd"), "ask", "--nats", url, "--model", "herd-tiny", "-v", "hello", "herd").CombinedOutput()
	if err != nil || !strings.Contains(string(ask), "echo: hello herd") || !strings.Contains(string(ask), "status 200") {
		t.Fatalf("herd ask: %v\n%s", err, ask)
	}
	bad, err := exec.Command(filepath.Join(bin, "herd"), "ask", "--nats", url, "--model", "nope", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(bad), "model_not_found") {
		t.Fatalf("herd ask for an unknown model: err %v\n%s", err, bad)
	}
	if err := stop(t, up); err != nil {
		t.Fatalf("herd up exited with %v after SIGTERM", err)
	}
	if !strings.Contains(up.Output(), "nats server stopped") {
		t.Fatalf("herd up did not shut down in order:\n%s", up.Output())
	}
}

// TestSeparateServices: nats-server, dispatcher and two workers as separate
// processes; requests are answered; SIGTERM under load loses nothing.
func TestSeparateServices(t *testing.T) {
	natsServer := testbin.Tool(t, "nats-server")
	bin := testbin.Binaries(t)
	fake := ollamatest.New(t, ollamatest.WithModels("tiny"), ollamatest.WithLatency(150*time.Millisecond))
	port := testbin.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte("max_payload: 8MB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := start(t, nil, natsServer, "-c", conf, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	ns.WaitOutput(t, "Server is ready", 20*time.Second)
	env := []string{"HERD_LOG__FORMAT=json", "HERD_QUEUE__ACK_WAIT=3s"}
	disp := start(t, env, filepath.Join(bin, "dispatcher"), "--nats", url, "--http", "")
	w1 := start(t, env, filepath.Join(bin, "worker"), "--nats", url, "--ollama", fake.URL, "--id", "w1", "--http", "")
	w2 := start(t, env, filepath.Join(bin, "worker"), "--nats", url, "--ollama", fake.URL, "--id", "w2", "--http", "")
	disp.WaitOutput(t, "dispatching", 20*time.Second)
	w1.WaitOutput(t, "serving", 20*time.Second)
	w2.WaitOutput(t, "serving", 20*time.Second)

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithAgent("proc"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 60
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	type res struct {
		worker string
		err    error
	}
	results := make(chan res, n)
	for i := range n {
		go func() {
			_, meta, err := c.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: fmt.Sprintf("p%d", i)})
			w := ""
			if meta != nil {
				w = meta.Worker
			}
			results <- res{w, err}
		}()
	}
	// Stop a worker gracefully while both are busy: it finishes what it
	// started and takes nothing new; the other worker serves the rest.
	natstest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if fake.InFlight() < 2 { // one normal slot per worker: the other is kept for high
			return fmt.Errorf("%d calls in flight", fake.InFlight())
		}
		return nil
	})
	if err := stop(t, w1); err != nil {
		t.Fatalf("worker exited with %v after SIGTERM", err)
	}
	by := map[string]int{}
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("request failed: %v", r.err)
		}
		by[r.worker]++
	}
	t.Logf("answers by worker: %v", by)
	if by["w1"]+by["w2"] != n || by["w2"] == 0 {
		t.Fatalf("answers by worker %v, want all %d with w2 taking over", by, n)
	}
	if err := stop(t, disp); err != nil {
		t.Fatalf("dispatcher exited with %v after SIGTERM", err)
	}
	if err := stop(t, w2); err != nil {
		t.Fatalf("worker exited with %v after SIGTERM", err)
	}
}
