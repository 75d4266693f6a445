package wire_test

import (
	"testing"

	"github.com/sutazai/herd/internal/wire"
)

func TestCheckReply(t *testing.T) {
	for _, tc := range []struct {
		subject string
		ok      bool
	}{
		{"_INBOX.alice.abc.id1", true},
		{"_INBOX.k3J9.x", true},
		{"my.replies.1", true},
		{"", false},
		{"herd.req.high.bob", false},
		{"herd.batch.m.high", false},
		{"$KV.herd_results.x", false},
		{"$JS.API.STREAM.DELETE.HERD_REQ", false},
		{"_INBOX_dispatcher.x", false},
		{"_HERD_GONE.x.y", false},
		{"_INBOX.*", false},
		{"_INBOX.>", false},
		{"a b", false},
		{"a..b", false},
		{".a", false},
		{"a.", false},
	} {
		if err := wire.CheckReply(tc.subject); (err == nil) != tc.ok {
			t.Errorf("CheckReply(%q) = %v, want ok=%v", tc.subject, err, tc.ok)
		}
	}
}
