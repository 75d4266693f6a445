package herd_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// composePasswords are the variables compose.yaml requires: one password
// for each user of deploy/nats/auth.conf.
var composePasswords = []string{
	"NATS_PASSWORD_SYS", "NATS_PASSWORD_DISPATCHER", "NATS_PASSWORD_WORKER",
	"NATS_PASSWORD_OPTIMIZER", "NATS_PASSWORD_OPERATOR", "NATS_PASSWORD_ADMIN",
	"NATS_PASSWORD_ALICE", "NATS_PASSWORD_BOB",
}

// loadCompose loads compose.yaml with the Compose specification's own loader
// (what `docker compose config` runs), with the passwords it requires set.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	for _, v := range composePasswords {
		t.Setenv(v, "pw-"+strings.ToLower(v))
	}
	if _, err := os.Stat("compose.yaml"); err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithOsEnv, cli.WithName("herd"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml is not valid: %v", err)
	}
	return p
}

// TestComposeValid checks that compose.yaml loads, so a broken file fails
// here rather than on a user's machine, and that it runs the whole stack.
func TestComposeValid(t *testing.T) {
	p := loadCompose(t)
	names := p.ServiceNames()
	for _, want := range []string{"nats", "ollama", "dispatcher", "worker", "optimizer", "prometheus", "grafana"} {
		if !slices.Contains(names, want) {
			t.Errorf("compose.yaml has no %s service (has %v)", want, names)
		}
	}
}

// TestComposeServices checks what the herd services and the monitoring
// services need from each other: each herd service serves /metrics on
// :8080, and every file Prometheus and Grafana mount exists in the repo.
func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"dispatcher", "worker", "optimizer"} {
		t.Run(name, func(t *testing.T) {
			s, err := p.GetService(name)
			if err != nil {
				t.Fatal(err)
			}
			if want := "/usr/local/bin/" + name; len(s.Entrypoint) != 1 || s.Entrypoint[0] != want {
				t.Errorf("entrypoint = %v, want [%s]", s.Entrypoint, want)
			}
			if i := slices.Index(s.Command, "--http"); i < 0 || i+1 >= len(s.Command) || s.Command[i+1] != "0.0.0.0:8080" {
				t.Errorf("command %v does not serve --http 0.0.0.0:8080 (Prometheus scrapes %s:8080)", s.Command, name)
			}
			if i := slices.Index(s.Command, "--nats"); i < 0 || i+1 >= len(s.Command) || s.Command[i+1] != "nats://nats:4222" {
				t.Errorf("command %v does not use --nats nats://nats:4222", s.Command)
			}
		})
	}
	for _, name := range []string{"prometheus", "grafana"} {
		t.Run(name, func(t *testing.T) {
			s, err := p.GetService(name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Image == "" {
				t.Error("no image")
			}
			binds := 0
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind {
					continue
				}
				binds++
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("mounts %s, which does not exist: %v", v.Source, err)
				}
			}
			if binds == 0 {
				t.Error("mounts nothing from deploy/")
			}
		})
	}
	g, err := p.GetService("grafana")
	if err != nil {
		t.Fatal(err)
	}
	if v := g.Environment["GF_AUTH_ANONYMOUS_ENABLED"]; v == nil || *v != "true" {
		t.Error("grafana: anonymous access is not enabled (GF_AUTH_ANONYMOUS_ENABLED)")
	}
	if v := g.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"]; v == nil || *v != "Viewer" {
		t.Error("grafana: anonymous users are not Viewers (GF_AUTH_ANONYMOUS_ORG_ROLE)")
	}
	// The dashboard must land in the directory the file provider reads.
	dir := dashboardProviderPath(t)
	found := false
	for _, v := range g.Volumes {
		if v.Type == types.VolumeTypeBind && filepath.Base(v.Source) == "herd-dashboard.json" && filepath.Dir(v.Target) == dir {
			found = true
		}
	}
	if !found {
		t.Errorf("grafana does not mount herd-dashboard.json into %s, the dashboard provider's path", dir)
	}
}

// TestComposeAuth checks the stack's access control: NATS loads the
// shipped deploy/nats/auth.conf with every password variable it references
// given; each herd service logs in as its own role with its own password;
// and without the passwords the stack refuses to start.
func TestComposeAuth(t *testing.T) {
	p := loadCompose(t)
	n, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(n.Command, "-c")
	if i < 0 || i+1 >= len(n.Command) {
		t.Fatalf("nats command %v loads no configuration (-c)", n.Command)
	}
	mounted := false
	for _, v := range n.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == n.Command[i+1] && filepath.Base(v.Source) == "auth.conf" &&
			filepath.Base(filepath.Dir(v.Source)) == "nats" {
			mounted = true
		}
	}
	if !mounted {
		t.Fatalf("nats does not mount deploy/nats/auth.conf at %s", n.Command[i+1])
	}
	conf, err := os.ReadFile("deploy/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$(NATS_PASSWORD_[A-Z0-9_]+)`).FindAllStringSubmatch(string(conf), -1) {
		if v := n.Environment[m[1]]; v == nil || *v == "" {
			t.Errorf("nats is not given %s, which auth.conf references", m[1])
		}
		if !slices.Contains(composePasswords, m[1]) {
			t.Errorf("compose.yaml does not require %s", m[1])
		}
	}
	for _, name := range []string{"dispatcher", "worker", "optimizer"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		user, pw := s.Environment["HERD_NATS__USER"], s.Environment["HERD_NATS__PASSWORD"]
		want := "pw-nats_password_" + name
		if user == nil || *user != name || pw == nil || *pw != want {
			t.Errorf("%s logs in as %v with %v, want user %s with NATS_PASSWORD_%s", name, user, pw, name, strings.ToUpper(name))
		}
	}
	// Without a password the stack does not start.
	t.Setenv("NATS_PASSWORD_WORKER", "")
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithOsEnv, cli.WithName("herd"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(context.Background()); err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD_WORKER") {
		t.Fatalf("compose.yaml loads without NATS_PASSWORD_WORKER: %v", err)
	}
}
