package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/testbin"
)

// upFake runs herd up (stack.Up) on a fake Ollama serving herd-tiny, with
// the HTTP doors on a free port, and returns their base URL once a worker
// serves the model. more adjusts the configuration.
func upFake(t *testing.T, more func(*config.Config)) (string, *ollamatest.Server) {
	t.Helper()
	fake := ollamatest.New(t, ollamatest.WithModels("herd-tiny"))
	c := config.Default()
	c.Server.Listen = "127.0.0.1:-1"
	c.Server.DataDir = t.TempDir()
	c.Server.SyncAlways = false
	c.HTTP.Listen = ""
	c.Ollama.URL = fake.URL
	c.API.Listen = fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))
	if more != nil {
		more(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- stack.Up(ctx, c, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), func(url string) { ready <- url })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("herd up: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("herd up: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("herd up: not ready after a minute")
	}
	base := "http://" + c.API.Listen
	natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/tags", nil)
		for k, v := range authHeader(c) {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var tags struct{ Models []struct{ Name string } }
		if err := decodeJSON(resp, &tags); err != nil {
			return err
		}
		if len(tags.Models) == 0 {
			return fmt.Errorf("no model served yet")
		}
		return nil
	})
	return base, fake
}
