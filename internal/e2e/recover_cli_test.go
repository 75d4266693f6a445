package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

// cliReply is what `nats request` printed: the Herd-Status header (empty
// when the reply had none) and the body.
type cliReply struct {
	status string
	body   string
	out    string
}

// natsRequest runs the real nats CLI: `nats request` with the headers on
// subject, and returns what it printed, or its error (a timeout).
func natsRequest(t *testing.T, cli, url, timeout, subject, body string, headers ...string) (cliReply, error) {
	t.Helper()
	args := []string{"--server", url, "--timeout", timeout, "request"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, subject, body)
	out, err := exec.Command(cli, args...).CombinedOutput()
	r := cliReply{out: string(out)}
	if err != nil {
		return r, fmt.Errorf("nats request %s: %w\n%s", subject, err, out)
	}
	for line := range strings.Lines(r.out) {
		line = strings.TrimSpace(line)
		// Headers are printed after a time stamp: "20:12:27 Herd-Status: 200".
		if _, v, ok := strings.Cut(line, " "+wire.HdrStatus+": "); ok {
			r.status = v
		}
		if strings.HasPrefix(line, "{") {
			r.body = line
		}
	}
	return r, nil
}

// TestRecoverWithNATSCLI: docs/protocol.md's recovery, done with the real
// nats CLI and nothing else. An ask whose caller gave up (its request
// timed out while Ollama ran) has lost its answer; a lookup on
// herd.lookup.<agent>.<id> says there is none while it runs, and gives it
// once it is stored; asking again with the same Nats-Msg-Id returns the
// stored answer without running the request again. Another agent's lookup
// reads nothing.
func TestRecoverWithNATSCLI(t *testing.T) {
	cli := testbin.Tool(t, "nats")
	s := newStack(t, stackOpts{})
	release := s.fake.Block()
	defer release()
	url := s.srv.URL
	const id = "alice=cli-job-1"
	body := string(genBody("tiny", "recover me with the nats CLI", `,"options":{"temperature":0.9}`))
	// The CLI gives up after 500ms (it prints no reply; v0.5 exits 0).
	if r, err := natsRequest(t, cli, url, "500ms", wire.AskSubject(wire.High, "alice"), body, wire.HdrMsgID+":"+id); err == nil && r.status != "" {
		t.Fatalf("the first ask was answered while Ollama was held: %s", r.out)
	}
	lookupSubject := wire.LookupSubject("alice", id)
	r, err := natsRequest(t, cli, url, "5s", lookupSubject, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.status != "" {
		t.Fatalf("lookup while the request runs: status %q, want an empty reply:\n%s", r.status, r.out)
	}
	release()
	var found cliReply
	natstest.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		r, err := natsRequest(t, cli, url, "5s", lookupSubject, "")
		if err != nil {
			return err
		}
		if r.status == "" {
			return fmt.Errorf("no outcome yet")
		}
		found = r
		return nil
	})
	if found.status != "200" || !strings.Contains(found.body, `"done":true`) {
		t.Fatalf("lookup: status %q body %q, want the answer:\n%s", found.status, found.body, found.out)
	}
	again, err := natsRequest(t, cli, url, "10s", wire.AskSubject(wire.High, "alice"), body, wire.HdrMsgID+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	if again.status != "200" || again.body != found.body {
		t.Fatalf("asked again under %s: status %q body %q, want the stored %q:\n%s", id, again.status, again.body, found.body, again.out)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Errorf("Ollama ran %d times for one id, want 1", n)
	}
	other, err := natsRequest(t, cli, url, "5s", wire.LookupSubject("bob", id), "")
	if err != nil {
		t.Fatal(err)
	}
	if other.status != "" || strings.Contains(other.out, found.body) {
		t.Fatalf("bob looked up alice's %s:\n%s", id, other.out)
	}
	t.Logf("lost ask recovered with the nats CLI: lookup and a second ask under %s both returned the one stored answer (%d bytes); Ollama ran once", id, len(found.body))
}
