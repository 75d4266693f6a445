package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sutazai/herd/internal/harness"
	"github.com/sutazai/herd/internal/natstest"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/wire"
)

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
	if r, err := harness.NATSRequest(cli, url, "500ms", wire.AskSubject(wire.High, "alice"), body, wire.HdrMsgID+":"+id); err == nil && r.Status != "" {
		t.Fatalf("the first ask was answered while Ollama was held: %s", r.Out)
	}
	lookupSubject := wire.LookupSubject("alice", id)
	r, err := harness.NATSRequest(cli, url, "5s", lookupSubject, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "" {
		t.Fatalf("lookup while the request runs: status %q, want an empty reply:\n%s", r.Status, r.Out)
	}
	release()
	var found harness.CLIReply
	natstest.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		r, err := harness.NATSRequest(cli, url, "5s", lookupSubject, "")
		if err != nil {
			return err
		}
		if r.Status == "" {
			return fmt.Errorf("no outcome yet")
		}
		found = r
		return nil
	})
	if found.Status != "200" || !strings.Contains(found.Body, `"done":true`) {
		t.Fatalf("lookup: status %q body %q, want the answer:\n%s", found.Status, found.Body, found.Out)
	}
	again, err := harness.NATSRequest(cli, url, "10s", wire.AskSubject(wire.High, "alice"), body, wire.HdrMsgID+":"+id)
	if err != nil {
		t.Fatal(err)
	}
	if again.Status != "200" || again.Body != found.Body {
		t.Fatalf("asked again under %s: status %q body %q, want the stored %q:\n%s", id, again.Status, again.Body, found.Body, again.Out)
	}
	if n := s.fake.Calls("generate"); n != 1 {
		t.Errorf("Ollama ran %d times for one id, want 1", n)
	}
	other, err := harness.NATSRequest(cli, url, "5s", wire.LookupSubject("bob", id), "")
	if err != nil {
		t.Fatal(err)
	}
	if other.Status != "" || strings.Contains(other.Out, found.Body) {
		t.Fatalf("bob looked up alice's %s:\n%s", id, other.Out)
	}
	t.Logf("lost ask recovered with the nats CLI: lookup and a second ask under %s both returned the one stored answer (%d bytes); Ollama ran once", id, len(found.Body))
}
