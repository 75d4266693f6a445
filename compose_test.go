package herd_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads compose.yaml with the Compose specification's own loader
// (what `docker compose config` runs).
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
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
