package auth_test

import (
	"errors"
	"testing"

	"github.com/sutazai/herd/internal/auth"
)

// TestAgentPasswordVariableIsItsOwn: passwords are the variables
// NATS_PASSWORD_<USER> with the user upper-cased and other characters as
// '_', so "Admin" or "worker" would log in with a service's password and
// "a-b" with "a_b"'s: such agents are refused.
func TestAgentPasswordVariableIsItsOwn(t *testing.T) {
	for _, name := range []string{"Admin", "admin", "Dispatcher", "WORKER", "Optimizer", "operator", "SYS"} {
		if _, err := auth.AgentBlock(name); !errors.Is(err, auth.ErrAgentName) {
			t.Errorf("agent %q shares a service's password variable %s: %v", name, auth.PasswordEnv(name), err)
		}
	}
	if _, err := auth.Render("alice", "Alice"); !errors.Is(err, auth.ErrAgentName) {
		t.Errorf("agents alice and Alice share %s: %v", auth.PasswordEnv("alice"), err)
	}
	if _, err := auth.Render("a-b", "a_b"); !errors.Is(err, auth.ErrAgentName) {
		t.Errorf("agents a-b and a_b share %s: %v", auth.PasswordEnv("a_b"), err)
	}
	if _, err := auth.Render("alice", "bob", "worker-1"); err != nil {
		t.Errorf("distinct agents refused: %v", err)
	}
}
