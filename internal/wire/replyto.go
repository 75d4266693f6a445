package wire

import (
	"fmt"
	"strings"
)

// replyForbidden are the subject spaces herd never answers into: its own
// subjects, JetStream's and KV's API, the service roles' inboxes and the
// workers' no-responders subjects. A request naming one as its reply
// subject would make a service publish there with the service's
// permissions: forge a request, a result or a batch.
var replyForbidden = []string{"herd.", "$", "_HERD_", "_INBOX_"}

// CheckReply returns an error when subject cannot be a reply subject: it
// is empty, not a literal subject (wildcards, spaces, empty tokens) or
// inside one of herd's own subject spaces.
func CheckReply(subject string) error {
	if subject == "" {
		return fmt.Errorf("%s is empty", HdrReplyTo)
	}
	if strings.ContainsAny(subject, " \t\r\n*>") || strings.HasPrefix(subject, ".") || strings.HasSuffix(subject, ".") || strings.Contains(subject, "..") {
		return fmt.Errorf("%s %q is not a literal subject", HdrReplyTo, subject)
	}
	for _, p := range replyForbidden {
		if strings.HasPrefix(subject, p) {
			return fmt.Errorf("%s %q is inside herd's own subjects (%s...): herd does not answer there", HdrReplyTo, subject, p)
		}
	}
	return nil
}
