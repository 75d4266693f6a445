package wire

import "strings"

// LookupPrefix starts the subject on which an agent asks a dispatcher for
// a stored outcome of one of its own requests: herd.lookup.<agent>.<id>.
// It is how the Go SDK finds the answer to a duplicate publish when the
// agent may not read herd_results itself (access control).
const LookupPrefix = "herd.lookup"

// AgentInboxSpace is the subject space herd's services answer into under
// access control: every agent's inbox prefix is _INBOX.<agent>.
const AgentInboxSpace = "_INBOX.>"

// LookupSubject returns herd.lookup.<agent>.<id>.
func LookupSubject(agent, id string) string { return LookupPrefix + "." + agent + "." + id }

// ScopedID returns a request id owned by agent: "<agent>=<suffix>". The
// suffix must not contain '='.
func ScopedID(agent, suffix string) string { return agent + "=" + suffix }

// IDOwner returns the agent that owns a scoped request id (the part
// before its last '='), and false when id is not scoped. An agent may
// look up only the outcomes of ids it owns.
func IDOwner(id string) (string, bool) {
	i := strings.LastIndexByte(id, '=')
	if i <= 0 || i == len(id)-1 {
		return "", false
	}
	return id[:i], true
}
