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

// MappedReplyPrefix starts the reply subjects the server maps a caller's
// reply to across a service import (_R_.<prefix>.<token>). A message
// published there is forwarded to the caller's pending request in its own
// account: herd answers there only to the message's own NATS reply (an
// ask, a lookup), never to a Herd-Reply-To header, which any agent could
// set to another agent's pending reply.
const MappedReplyPrefix = "_R_."

// CheckReply returns an error when subject cannot be a reply subject named
// in a Herd-Reply-To header: it is empty, not a literal subject
// (wildcards, spaces, empty tokens), inside one of herd's own subject
// spaces, or a mapped reply (MappedReplyPrefix).
func CheckReply(subject string) error {
	if strings.HasPrefix(subject, MappedReplyPrefix) {
		return fmt.Errorf("%s %q is a mapped reply subject (%s...): herd answers there only to the request's own NATS reply", HdrReplyTo, subject, MappedReplyPrefix)
	}
	return CheckNATSReply(subject)
}

// CheckNATSReply is CheckReply for the NATS reply subject of a message
// herd answers (an ask, a lookup): under access control the server maps it
// (MappedReplyPrefix), so a mapped reply is accepted there.
func CheckNATSReply(subject string) error {
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
