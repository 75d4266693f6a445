package herd_test

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

// TestComposeValid loads compose.yaml with the Compose specification's own
// loader (what `docker compose config` runs), so a broken file fails here
// rather than on a user's machine.
func TestComposeValid(t *testing.T) {
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
	names := p.ServiceNames()
	for _, want := range []string{"nats", "ollama", "dispatcher", "worker"} {
		if !slices.Contains(names, want) {
			t.Errorf("compose.yaml has no %s service (has %v)", want, names)
		}
	}
}
