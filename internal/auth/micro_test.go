package auth_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/discovery"
	"github.com/sutazai/herd/internal/testbin"
	"github.com/sutazai/herd/internal/version"
	"github.com/sutazai/herd/internal/wire"
)

// TestMicroDiscovery: under access control, the real nats CLI lists herd
// up's dispatcher, worker and optimizer as micro services (`nats micro
// ls`), shows their subjects (`info`) and their request counts
// (`stats`), as the read-only operator from its own account and as the
// admin; no service saw a permission error (upWith's cleanup).
func TestMicroDiscovery(t *testing.T) {
	natsCLI := testbin.Tool(t, "nats")
	url := upWith(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, alice := agent(t, url, "alice")
	if _, _, err := alice.Generate(ctx, &api.GenerateRequest{Model: "herd-tiny", Prompt: "hi"}); err != nil {
		t.Fatalf("alice: %v", err)
	}
	for _, user := range []string{auth.Operator, auth.Admin} {
		t.Run(user, func(t *testing.T) {
			run := func(args ...string) []byte {
				t.Helper()
				full := append([]string{"--server", url, "--user", user, "--password", password(user),
					"--inbox-prefix", auth.DefaultInbox(user), "--timeout", "5s"}, args...)
				out, err := exec.CommandContext(ctx, natsCLI, full...).Output()
				if err != nil {
					var stderr string
					if ee, ok := err.(*exec.ExitError); ok {
						stderr = string(ee.Stderr)
					}
					t.Fatalf("nats %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
				}
				return out
			}
			var list []struct{ Name, Version, ID string }
			if err := json.Unmarshal(run("micro", "ls", "--json"), &list); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range list {
				names = append(names, s.Name)
				if s.Version != version.SemVer() || s.ID == "" {
					t.Errorf("service %+v, want version %s and an id", s, version.SemVer())
				}
			}
			slices.Sort(names)
			if want := []string{"herd-dispatcher", "herd-optimizer", "herd-worker"}; !slices.Equal(names, want) {
				t.Fatalf("nats micro ls: %v, want %v", names, want)
			}

			var info struct {
				Info struct {
					Metadata  map[string]string
					Endpoints []struct{ Name, Subject string }
				}
			}
			if err := json.Unmarshal(run("micro", "info", "herd-dispatcher", "--json"), &info); err != nil {
				t.Fatal(err)
			}
			if in := info.Info; !strings.HasPrefix(in.Metadata["subject.ask"], wire.AskPrefix+".") ||
				len(in.Endpoints) != 1 || in.Endpoints[0].Name != "status" || in.Endpoints[0].Subject != discovery.StatusSubject("dispatcher") {
				t.Errorf("nats micro info herd-dispatcher: %+v", info)
			}

			var stats []struct {
				Endpoints []struct {
					Name string
					Data discovery.Status
				}
			}
			if err := json.Unmarshal(run("micro", "stats", "herd-dispatcher", "--json"), &stats); err != nil {
				t.Fatal(err)
			}
			if len(stats) != 1 || len(stats[0].Endpoints) != 1 || stats[0].Endpoints[0].Data.Counters["dispatcher_requests_total"] < 1 {
				t.Errorf("nats micro stats herd-dispatcher: %+v, want the request alice sent counted", stats)
			}

			var st discovery.Status
			if err := json.Unmarshal(run("request", discovery.StatusSubject("worker"), ""), &st); err != nil || st.Service != "herd-worker" || st.Metadata["worker"] == "" {
				t.Errorf("status of a worker: %+v, %v", st, err)
			}
		})
	}
}
