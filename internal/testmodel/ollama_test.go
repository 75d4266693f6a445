//go:build unix

package testmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ollamaBinary returns the Ollama binary to test against: $HERD_OLLAMA_BIN
// if set, else bin/ollama at the module root. It skips the test if there is
// none.
func ollamaBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HERD_OLLAMA_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "ollama")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
		t.Skipf("no Ollama binary at %s (build it, or set HERD_OLLAMA_BIN)", abs)
	}
	return abs
}

// ollamaServer is an `ollama serve` process private to one test.
type ollamaServer struct {
	bin  string
	host string   // 127.0.0.1:port
	env  []string // environment for the server and the CLI
}

// startOllama starts `ollama serve` on a free loopback port, with its home
// and model store in temporary directories, and waits until it answers.
// The server and its runners (one process group) are killed when the test
// ends.
func startOllama(t *testing.T, ctx context.Context, bin string) *ollamaServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()

	tmp := t.TempDir()
	home, models := filepath.Join(tmp, "home"), filepath.Join(tmp, "models")
	for _, d := range []string{home, models} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OLLAMA_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+home, "OLLAMA_MODELS="+models, "OLLAMA_HOST="+host)
	s := &ollamaServer{bin: bin, host: host, env: env}

	logPath := filepath.Join(tmp, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting ollama serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// The runners are in the server's process group: kill them all.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				if len(b) > 8<<10 {
					b = b[len(b)-8<<10:]
				}
				t.Logf("tail of ollama serve log:\n%s", b)
			}
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/api/version", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("ollama serve exited: %v", err)
		case <-ctx.Done():
			t.Fatalf("ollama serve did not start: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ollama serve did not answer on %s: %v", host, err)
		}
	}
}

// create runs `ollama create name -f modelfile` against the server.
func (s *ollamaServer) create(t *testing.T, ctx context.Context, name, modelfile string) {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, s.bin, "create", name, "-f", modelfile)
	cmd.Env = s.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ollama create %s: %v\n%s", name, err, out)
	}
	t.Logf("ollama create %s: %v", name, time.Since(start).Round(time.Millisecond))
}

// post sends body as JSON to path and decodes the JSON answer into out.
func (s *ollamaServer) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.host+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

type generateResponse struct {
	Response     string `json:"response"`
	Done         bool   `json:"done"`
	DoneReason   string `json:"done_reason"`
	EvalCount    int    `json:"eval_count"`
	EvalDuration int64  `json:"eval_duration"` // nanoseconds
	LoadDuration int64  `json:"load_duration"` // nanoseconds
}

func (s *ollamaServer) generate(t *testing.T, ctx context.Context, model, prompt string, numPredict int) generateResponse {
	t.Helper()
	var r generateResponse
	err := s.post(ctx, "/api/generate", map[string]any{
		"model":   model,
		"prompt":  prompt,
		"stream":  false,
		"options": map[string]any{"temperature": 0, "num_predict": numPredict},
	}, &r)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Done || r.Response == "" || r.EvalCount <= 0 {
		t.Fatalf("generate %s: unexpected answer %+v", model, r)
	}
	// The model cannot emit </s> or repeat itself, so it always runs to
	// num_predict.
	if r.EvalCount != numPredict || r.DoneReason != "length" {
		t.Errorf("generate %s: eval_count %d, done_reason %q; want %d, \"length\"", model, r.EvalCount, r.DoneReason, numPredict)
	}
	return r
}

func (r generateResponse) tokensPerSecond() float64 {
	if r.EvalDuration <= 0 {
		return 0
	}
	return float64(r.EvalCount) / (float64(r.EvalDuration) / 1e9)
}

// TestOllama imports the models into a real, private Ollama server and runs
// them. It needs the Ollama binary (see ollamaBinary).
func TestOllama(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Ollama server")
	}
	bin := ollamaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := startOllama(t, ctx, bin)

	dir := t.TempDir()
	modelfile, err := WriteDir(dir, Tiny)
	if err != nil {
		t.Fatal(err)
	}
	srv.create(t, ctx, Tiny.Name, modelfile)

	first := srv.generate(t, ctx, Tiny.Name, "hello", 32)
	second := srv.generate(t, ctx, Tiny.Name, "hello", 32)
	if first.Response != second.Response {
		t.Errorf("temperature 0 gave different answers:\n%q\n%q", first.Response, second.Response)
	}
	t.Logf("herd-tiny: load %v, %q", time.Duration(first.LoadDuration).Round(time.Millisecond), first.Response)
	if other := srv.generate(t, ctx, Tiny.Name, "the quick red dog", 32); other.Response == first.Response {
		t.Errorf("different prompts gave the same answer %q", other.Response)
	}

	var embed struct {
		Embeddings [][]float32 `json:"embeddings"`
	}
	if err := srv.post(ctx, "/api/embed", map[string]any{"model": Tiny.Name, "input": []string{"a", "b"}}, &embed); err != nil {
		t.Fatal(err)
	}
	if len(embed.Embeddings) != 2 {
		t.Fatalf("embed returned %d vectors, want 2", len(embed.Embeddings))
	}
	for i, v := range embed.Embeddings {
		if len(v) != Tiny.Embedding {
			t.Errorf("embedding %d has %d dimensions, want %d", i, len(v), Tiny.Embedding)
		}
	}
	if slices.Equal(embed.Embeddings[0], embed.Embeddings[1]) {
		t.Error(`embeddings of "a" and "b" are equal`)
	}

	// Speed of both presets (logged, not asserted: it depends on the
	// machine and its load).
	tiny := srv.generate(t, ctx, Tiny.Name, "speed", 256)
	t.Logf("herd-tiny: %.0f tokens/s", tiny.tokensPerSecond())

	t.Run(Slow.Name, func(t *testing.T) {
		dir := t.TempDir()
		modelfile, err := WriteDir(dir, Slow)
		if err != nil {
			t.Fatal(err)
		}
		srv.create(t, ctx, Slow.Name, modelfile)
		a := srv.generate(t, ctx, Slow.Name, "hello", 8)
		b := srv.generate(t, ctx, Slow.Name, "hello", 8)
		if a.Response != b.Response {
			t.Errorf("temperature 0 gave different answers:\n%q\n%q", a.Response, b.Response)
		}
		slow := srv.generate(t, ctx, Slow.Name, "speed", 96)
		t.Logf("herd-slow: load %v, %.0f tokens/s (%.1fx slower than herd-tiny)",
			time.Duration(a.LoadDuration).Round(time.Millisecond), slow.tokensPerSecond(),
			tiny.tokensPerSecond()/slow.tokensPerSecond())
	})
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("test ran out of time")
	}
}
