package harness

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/managed"
	"github.com/sutazai/herd/internal/testbin"
)

// StartOllama starts a managed `ollama serve` with cfg (TestModels are
// imported before it returns) and returns it with the function that stops
// it and removes its state. cfg.Binary defaults to the pinned build
// (testbin.Ollama: without it the test is skipped, or fails when
// testbin.RequireEnv is set); cfg.Dir to a new temporary directory. A
// -short run skips the test. The instance outlives tb: the caller stops
// it (Ollama does that for one test). log may be nil.
func StartOllama(tb testing.TB, cfg managed.Config, log *zap.Logger) (*managed.Instance, func()) {
	tb.Helper()
	if cfg.Binary == "" {
		cfg.Binary = testbin.Ollama(tb)
	}
	if testing.Short() {
		tb.Skip("starts a real Ollama server")
	}
	if log == nil {
		log = zap.NewNop()
	}
	var tmp string
	if cfg.Dir == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "herd-ollama-"); err != nil {
			tb.Fatal(err)
		}
		cfg.Dir = tmp
	}
	ctx, cancel := context.WithCancel(context.Background())
	begin := time.Now()
	inst, err := managed.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
		tb.Fatal(err)
	}
	tb.Logf("managed Ollama %s (parallel %d, queue %d, models %v) ready in %v",
		inst.URL(), max(cfg.NumParallel, 1), cfg.MaxQueue, cfg.TestModels, time.Since(begin).Round(time.Millisecond))
	return inst, func() {
		cancel()
		_ = inst.Wait()
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
	}
}

// Ollama is StartOllama for one test: the instance logs its warnings to
// the test and is stopped when the test ends.
func Ollama(tb testing.TB, cfg managed.Config) *managed.Instance {
	tb.Helper()
	inst, stop := StartOllama(tb, cfg, zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)))
	tb.Cleanup(stop)
	return inst
}
