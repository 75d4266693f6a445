package auth_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/testbin"
)

// TestGatewayUnderAuth: herd up --auth logs its HTTP gateway in as the
// gateway role. A call with alice's API key is answered as alice (its
// models listed through the dispatchers, since the gateway cannot read
// herd_control), a call without a key is 401, and the gateway's NATS user
// may not ask as an agent its keys do not name.
func TestGatewayUnderAuth(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("sk-alice alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testbin.FreePort(t))
	url := upWith(t, func(c *config.Config) {
		c.API.Listen = listen
		c.API.KeysFile = keys
	})
	call := func(method, path, key, body string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+listen+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if st, b := call(http.MethodGet, "/api/tags", "sk-alice", ""); st != 200 || !strings.Contains(b, "herd-tiny") {
			return fmt.Errorf("/api/tags: %d %s", st, b)
		}
		return nil
	})
	if st, b := call(http.MethodPost, "/api/generate", "sk-alice", `{"model":"herd-tiny","prompt":"hi","stream":false}`); st != 200 || !strings.Contains(b, "echo: hi") {
		t.Fatalf("alice's key: %d %s", st, b)
	}
	if st, b := call(http.MethodPost, "/api/generate", "", `{"model":"herd-tiny","prompt":"hi","stream":false}`); st != 401 {
		t.Fatalf("no key: %d %s, want 401", st, b)
	}

	var mu sync.Mutex
	var errs []string
	nc, err := nats.Connect(url, nats.UserInfo(auth.Gateway, password(auth.Gateway)),
		nats.CustomInboxPrefix(auth.ServiceInbox(auth.Gateway)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err.Error())
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := nc.Publish("herd.ask.high.other", []byte(`{"model":"herd-tiny","prompt":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range errs {
			if strings.Contains(strings.ToLower(e), "permissions violation") && strings.Contains(e, `"herd.ask.high.other"`) {
				return nil
			}
		}
		return errors.New("no permissions violation for herd.ask.high.other yet: " + strings.Join(errs, "; "))
	})
}
