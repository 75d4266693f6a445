package managed

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/testmodel"
)

// ollamaBinary returns the Ollama binary to test against: $HERD_OLLAMA_BIN,
// else bin/ollama at the module root. Without one the test is skipped, or
// fails when HERD_REQUIRE_OLLAMA=1.
func ollamaBinary(t *testing.T) string {
	t.Helper()
	var (
		bin string
		err error
	)
	if p := os.Getenv(BinaryEnv); p != "" {
		bin, err = checkBinary(p)
	} else {
		bin, err = RepoBinary()
	}
	if err != nil {
		if os.Getenv("HERD_REQUIRE_OLLAMA") == "1" {
			t.Fatalf("HERD_REQUIRE_OLLAMA=1 but %v", err)
		}
		t.Skipf("needs the pinned Ollama (scripts/tools.sh, or set %s): %v", BinaryEnv, err)
	}
	return bin
}

// start starts a managed Ollama for the test, stopped when the test ends.
func start(t *testing.T, cfg Config) (*Instance, context.CancelFunc) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real Ollama server")
	}
	cfg.Binary = ollamaBinary(t)
	cfg.Dir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	begin := time.Now()
	inst, err := Start(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Logf("Start (models %v): %v", cfg.TestModels, time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		cancel()
		inst.Wait()
	})
	return inst, cancel
}

func client(t *testing.T, inst *Instance) *api.Client {
	t.Helper()
	u, err := url.Parse(inst.URL())
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, http.DefaultClient)
}

// generate runs a deterministic, non-streaming generation.
func generate(ctx context.Context, c *api.Client, model, prompt string, numPredict int) (api.GenerateResponse, error) {
	stream := false
	var out api.GenerateResponse
	err := c.Generate(ctx, &api.GenerateRequest{
		Model:   model,
		Prompt:  prompt,
		Stream:  &stream,
		Options: map[string]any{"temperature": 0, "num_predict": numPredict},
	}, func(r api.GenerateResponse) error {
		out = r
		return nil
	})
	return out, err
}

// checkFor calls f every step until it returns nil, failing the test with
// f's last error after total.
func checkFor(t *testing.T, total, step time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(step)
	}
}

func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// TestLifecycle imports herd-tiny, generates, survives a crash and stops.
func TestLifecycle(t *testing.T) {
	inst, cancel := start(t, Config{TestModels: []string{testmodel.Tiny.Name}})
	ctx := t.Context()
	c := client(t, inst)

	var first string
	t.Run("import and generate", func(t *testing.T) {
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range list.Models {
			names = append(names, m.Name)
		}
		if !strings.Contains(strings.Join(names, " "), testmodel.Tiny.Name) {
			t.Fatalf("/api/tags lists %v, want %s", names, testmodel.Tiny.Name)
		}
		a, err := generate(ctx, c, testmodel.Tiny.Name, "hello", 32)
		if err != nil {
			t.Fatal(err)
		}
		b, err := generate(ctx, c, testmodel.Tiny.Name, "hello", 32)
		if err != nil {
			t.Fatal(err)
		}
		if a.Response == "" || a.Response != b.Response {
			t.Fatalf("temperature 0 answers %q and %q, want the same non-empty text", a.Response, b.Response)
		}
		first = a.Response
		t.Logf("load %v, answer %q", a.LoadDuration.Round(time.Millisecond), first)
	})

	t.Run("preload", func(t *testing.T) {
		begin := time.Now()
		if err := Preload(ctx, c, testmodel.Tiny.Name, 1024, time.Hour); err != nil {
			t.Fatal(err)
		}
		t.Logf("Preload with num_ctx 1024 (a reload): %v", time.Since(begin).Round(time.Millisecond))
		ps, err := c.ListRunning(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps.Models) != 1 || time.Until(ps.Models[0].ExpiresAt) < 50*time.Minute {
			t.Fatalf("/api/ps = %+v, want herd-tiny loaded for about an hour", ps.Models)
		}
		if err := Preload(ctx, c, "no-such-model", 0, 0); err == nil {
			t.Error("Preload of an unknown model succeeded")
		}
	})

	t.Run("restart after crash", func(t *testing.T) {
		oldPID := inst.PID()
		begin := time.Now()
		if err := inst.Kill(); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if inst.Restarts() != 1 || inst.PID() == oldPID {
				return errors.New("not restarted yet")
			}
			if !inst.answers(ctx) {
				return errors.New("restarted server does not answer yet")
			}
			return nil
		})
		t.Logf("restart: answering again %v after Kill", time.Since(begin).Round(time.Millisecond))
		if alive(oldPID) {
			t.Errorf("killed pid %d is still alive", oldPID)
		}
		a, err := generate(ctx, c, testmodel.Tiny.Name, "hello", 32)
		if err != nil {
			t.Fatal(err)
		}
		if a.Response != first {
			t.Errorf("after restart the answer is %q, want %q", a.Response, first)
		}
		if n := inst.Restarts(); n != 1 {
			t.Errorf("Restarts() = %d, want 1", n)
		}
	})

	t.Run("stop", func(t *testing.T) {
		pid := inst.PID()
		begin := time.Now()
		cancel()
		done := make(chan struct{})
		go func() {
			inst.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not return within 10s of cancel")
		}
		t.Logf("stop: %v", time.Since(begin).Round(time.Millisecond))
		if alive(pid) {
			t.Errorf("pid %d is still alive after Wait", pid)
		}
		if syscall.Kill(-pid, 0) == nil {
			t.Errorf("process group %d (runners) still has members after Wait", pid)
		}
		if inst.PID() != 0 {
			t.Errorf("PID() = %d after stop, want 0", inst.PID())
		}
		if err := inst.Kill(); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Kill after stop = %v, want ErrNotRunning", err)
		}
	})
}

// TestPinned checks that the server and its restarts run on Config.CPUs.
func TestPinned(t *testing.T) {
	inst, _ := start(t, Config{CPUs: []int{0}, TestModels: []string{}})
	check := func() {
		t.Helper()
		b, err := os.ReadFile("/proc/" + strconv.Itoa(inst.PID()) + "/status")
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				if got := strings.TrimSpace(v); got != "0" {
					t.Errorf("pid %d Cpus_allowed_list = %q, want \"0\"", inst.PID(), got)
				}
				return
			}
		}
		t.Error("no Cpus_allowed_list in /proc/<pid>/status")
	}
	check()
	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if inst.Restarts() != 1 || !inst.answers(t.Context()) {
			return errors.New("not restarted yet")
		}
		return nil
	})
	check()
}

// burst sends n concurrent generations with plain HTTP (api.Client loses
// the status of Generate errors) and counts the answers by status; busy is
// the body of one 503 answer.
func burst(ctx context.Context, base, model string, n, numPredict int) (counts map[int]int, busy string) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	counts = make(map[int]int)
	body := `{"model":"` + model + `","prompt":"tell me a long story","stream":false,` +
		`"options":{"temperature":0,"num_predict":` + strconv.Itoa(numPredict) + `}}`
	for range n {
		wg.Go(func() {
			code, text := -1, ""
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/generate", strings.NewReader(body))
			if err == nil {
				var resp *http.Response
				if resp, err = http.DefaultClient.Do(req); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					code, text = resp.StatusCode, string(b)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			counts[code]++
			if code == http.StatusServiceUnavailable {
				busy = text
			}
		})
	}
	wg.Wait()
	return counts, busy
}

// TestQueueFull checks that NumParallel and MaxQueue reach Ollama: with one
// slot and a queue of one, a burst of 8 generations while the model still
// has to load gets some answers and some 503 "server busy" (requests pile up
// behind the load). Once it is loaded a burst usually gets some 503s too,
// but not always on a busy machine (the runner takes them as they come),
// so that phase only checks that every answer is a 200 or a 503.
func TestQueueFull(t *testing.T) {
	inst, _ := start(t, Config{NumParallel: 1, MaxQueue: 1, TestModels: []string{testmodel.Slow.Name}})
	ctx := t.Context()
	for _, phase := range []string{"cold", "warm"} {
		begin := time.Now()
		counts, busy := burst(ctx, inst.URL(), testmodel.Slow.Name, 8, 48)
		t.Logf("%s model: 8 concurrent generations: %v (HTTP status: count) in %v", phase, counts,
			time.Since(begin).Round(time.Millisecond))
		if counts[http.StatusOK] == 0 || counts[http.StatusOK]+counts[http.StatusServiceUnavailable] != 8 ||
			(phase == "cold" && counts[http.StatusServiceUnavailable] == 0) {
			t.Errorf("%s model: answers %v, want some 200 (and, cold, some 503) and nothing else", phase, counts)
		}
		if counts[http.StatusServiceUnavailable] > 0 && !strings.Contains(busy, "server busy") {
			t.Errorf("%s model: 503 body %q, want Ollama's \"server busy\"", phase, busy)
		}
	}
}
