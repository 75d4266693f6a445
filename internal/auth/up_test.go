package auth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ollama/ollama/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/ollamatest"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/wire"
)

// upWith runs herd up (stack.Up) with --auth and the shipped
// configuration in this process, against a fake Ollama, with the changes
// of modify, and returns the NATS URL once it is ready.
func upWith(t *testing.T, modify func(*config.Config)) string {
	t.Helper()
	setPasswords(t)
	fake := ollamatest.New(t, ollamatest.WithModels("herd-tiny"))
	c := config.Default()
	c.Server.Listen = "127.0.0.1:-1"
	c.Server.DataDir = t.TempDir()
	c.Server.SyncAlways = false
	c.Server.Auth = true
	c.Server.AuthFile = shipped
	c.Ollama.URL = fake.URL
	// The optimizer decides often, so that its writes happen under test.
	c.Optimizer.Tick = 100 * time.Millisecond
	// The live page runs too (it reads as the optimizer).
	c.HTTP.Listen = "127.0.0.1:0"
	if modify != nil {
		modify(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	// Every error the services' connections see is recorded: a service
	// refused what it needs fails the test.
	core, logs := observer.New(zap.ErrorLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	go func() { done <- stack.Up(ctx, c, log, func(url string) { ready <- url }) }()
	t.Cleanup(func() {
		for _, e := range logs.FilterMessage("nats").All() {
			t.Errorf("a service saw a nats error: %v", e.ContextMap())
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("herd up: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("herd up did not stop")
		}
	})
	select {
	case url := <-ready:
		return url
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("herd up --auth: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("herd up --auth not ready")
	}
	return ""
}

// agent connects as an agent with its own inbox and returns an SDK client.
func agent(t *testing.T, url, name string) (*nats.Conn, *client.Client) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(name, password(name)), nats.CustomInboxPrefix(client.AgentInbox(name)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := client.New(nc, client.WithAgent(name), client.WithInboxPrefix(client.AgentInbox(name)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return nc, c
}

// TestUpWithAuth: herd up --auth answers an agent through the SDK and
// through the real nats CLI with its inbox prefix; a duplicate publish
// finds its answer through the dispatcher's lookup, which never hands an
// agent another agent's result.
func TestUpWithAuth(t *testing.T) {
	url := upWith(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, alice := agent(t, url, "alice")
	req := &api.GenerateRequest{Model: "herd-tiny", Prompt: "hi"}
	resp, meta, err := alice.Generate(ctx, req, client.RequestID("alice=dup1"))
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	if resp.Response != "echo: hi" || meta.Status != 200 {
		t.Fatalf("alice got %+v %+v", resp, meta)
	}

	t.Run("duplicate found through lookup", func(t *testing.T) {
		// A new client (a restarted agent) sends the same id: JetStream
		// drops it as a duplicate and the answer comes from the dispatcher.
		_, again := agent(t, url, "alice")
		resp, meta, err := again.Generate(ctx, req, client.RequestID("alice=dup1"))
		if err != nil {
			t.Fatalf("duplicate: %v", err)
		}
		if resp.Response != "echo: hi" || meta.RequestID != "alice=dup1" {
			t.Fatalf("duplicate got %+v %+v", resp, meta)
		}
	})
	t.Run("another agent's result is not handed out", func(t *testing.T) {
		bnc, bob := agent(t, url, "bob")
		if _, _, err := bob.Generate(ctx, req, client.RequestID("alice=dup1")); err == nil {
			t.Fatal("bob used alice's id")
		}
		m, err := bnc.Request(wire.LookupSubject("bob", "alice=dup1"), nil, 10*time.Second)
		if err != nil {
			t.Fatalf("bob's lookup: %v", err)
		}
		if m.Header.Get(wire.HdrStatus) != "" || len(m.Data) != 0 {
			t.Fatalf("bob's lookup of alice's id answered %q %v", m.Data, m.Header)
		}
		// bob's own id, sent as a duplicate, is found.
		if _, _, err := bob.Generate(ctx, req, client.RequestID("bob=1")); err != nil {
			t.Fatal(err)
		}
		m, err = bnc.Request(wire.LookupSubject("bob", "bob=1"), nil, 10*time.Second)
		if err != nil || m.Header.Get(wire.HdrStatus) != "200" {
			t.Fatalf("bob's own lookup: %v %v", err, m)
		}
	})
	t.Run("reply subjects inside herd are refused", func(t *testing.T) {
		// alice may not publish as bob or write results herself; naming
		// those subjects as her reply must not make herd do it for her.
		admin, err := nats.Connect(url, nats.UserInfo(auth.Admin, password(auth.Admin)))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		leaked := make(chan *nats.Msg, 8)
		for _, subj := range []string{"herd.req.*.bob", "$KV.herd_results.forged", "_INBOX_dispatcher.x"} {
			if _, err := admin.ChanSubscribe(subj, leaked); err != nil {
				t.Fatal(err)
			}
		}
		dlq, err := admin.SubscribeSync(wire.DLQPrefix + ".*.alice")
		if err != nil {
			t.Fatal(err)
		}
		_ = admin.Flush()
		anc, _ := agent(t, url, "alice")
		js, _ := jetstream.New(anc)
		replies := []string{wire.ReqSubject(wire.High, "bob"), "$KV.herd_results.forged", "_INBOX_dispatcher.x"}
		for i, reply := range replies {
			m := nats.NewMsg(wire.ReqSubject(wire.High, "alice"))
			m.Data = []byte(`{"model":"herd-tiny","prompt":"forge"}`)
			m.Header.Set(wire.HdrReplyTo, reply)
			if _, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("alice=forge%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		for range len(replies) {
			dl, err := dlq.NextMsg(20 * time.Second)
			if err != nil {
				t.Fatalf("dead letters: %v", err)
			}
			if r := dl.Header.Get(wire.HdrReason); !strings.Contains(r, "herd's own subjects") {
				t.Fatalf("dead letter reason %q", r)
			}
		}
		// The ask door with a forged NATS reply subject: alice is in the
		// AGENTS account, so herd sees only the server's mapping of her
		// reply subject (_R_...) and answers there; the server forwards the
		// answer to her subject in AGENTS, where nothing of herd's lives.
		answers, err := admin.SubscribeSync(auth.ServiceReplies)
		if err != nil {
			t.Fatal(err)
		}
		_ = admin.Flush()
		m := nats.NewMsg(wire.AskSubject(wire.High, "alice"))
		m.Reply = wire.ReqSubject(wire.High, "bob")
		m.Data = []byte(`{"model":"herd-tiny","prompt":"forge"}`)
		if err := anc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		a, err := answers.NextMsg(20 * time.Second)
		for err == nil && a.Header.Get(wire.HdrProbe) != "" { // a worker's presence probe
			a, err = answers.NextMsg(20 * time.Second)
		}
		if err != nil {
			t.Fatalf("the forged ask was not answered on a mapped reply: %v", err)
		}
		if !strings.Contains(string(a.Data), "echo: forge") {
			t.Fatalf("answer on %s: %q", a.Subject, a.Data)
		}
		if n, _, _ := dlq.Pending(); n != 0 {
			t.Fatalf("%d more dead letters", n)
		}
		select {
		case m := <-leaked:
			t.Fatalf("herd published on %s (subscription %s, reply %s) for alice: %s", m.Subject, m.Sub.Subject, m.Reply, m.Data)
		case <-time.After(200 * time.Millisecond):
		}
	})
	t.Run("nats CLI with inbox prefix", func(t *testing.T) {
		natsCLI := tool(t, "nats")
		cli := func(subject, timeout string) (string, error) {
			out, err := exec.Command(natsCLI, "--server", url, "--user", "alice", "--password", password("alice"),
				"--inbox-prefix", auth.AgentInbox("alice"), "request", "--timeout", timeout, subject,
				`{"model":"herd-tiny","prompt":"hi from the cli"}`).CombinedOutput()
			return string(out), err
		}
		out, err := cli(wire.AskSubject(wire.High, "alice"), "20s")
		if err != nil || !strings.Contains(out, "Herd-Status: 200") || !strings.Contains(out, "echo: hi from the cli") {
			t.Fatalf("nats request as alice: %v\n%s", err, out)
		}
		if out, _ := cli(wire.AskSubject(wire.High, "bob"), "1s"); strings.Contains(out, "Herd-Status") || !strings.Contains(out, "Permissions Violation") {
			t.Fatalf("nats request as bob was not refused:\n%s", out)
		}
	})
}

// tool returns a pinned tool from the repository's bin/, skipping the
// test when it is not installed.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s not installed (make tools)", p)
	}
	return p
}

// TestNATSServerAcceptsShippedConfig: the pinned nats-server binary (what
// compose.yaml's nats service runs) validates deploy/nats/auth.conf when
// the passwords are set, and refuses it when one is missing.
func TestNATSServerAcceptsShippedConfig(t *testing.T) {
	bin := tool(t, "nats-server")
	setPasswords(t)
	if out, err := exec.Command(bin, "-t", "-c", shipped).CombinedOutput(); err != nil {
		t.Fatalf("nats-server -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-t", "-c", shipped)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, auth.PasswordEnv("bob")+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), auth.PasswordEnv("bob")) {
		t.Fatalf("nats-server accepted the configuration without bob's password: %v\n%s", err, out)
	}
}
