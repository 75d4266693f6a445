package wire

import "testing"

func TestProbeSubject(t *testing.T) {
	for _, tc := range []struct {
		reply, want string
		ok          bool
	}{
		{"_INBOX.abc.def", "_INBOX.abc." + ProbeToken, true},
		{"_INBOX.planner.abc.def.req-1", "_INBOX.planner.abc.def." + ProbeToken, true},
		{"replies.x", "replies." + ProbeToken, true},
		{"single", "", false},
		{"", "", false},
		{"_INBOX.abc." + ProbeToken, "", false},
	} {
		got, ok := ProbeSubject(tc.reply)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ProbeSubject(%q) = %q, %v; want %q, %v", tc.reply, got, ok, tc.want, tc.ok)
		}
	}
	if ValidToken(ProbeToken) {
		t.Errorf("ProbeToken %q is a valid request id: a client keyed by ids could wait on it", ProbeToken)
	}
}
