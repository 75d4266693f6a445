package wire

import "strings"

// HdrProbe marks a worker's presence probe: an empty message a worker
// publishes, while a non-streaming request runs, on the sibling of the
// request's reply subject (ProbeSubject). It is never an answer; clients
// drop it. Its NATS reply is the worker's (under GonePrefix): when nothing
// subscribes to the sibling, NATS answers there with a no-responders status.
const HdrProbe = "Herd-Probe"

// ProbeToken replaces the last token of a reply subject to make its probe
// sibling. It is outside the request-id alphabet (ValidToken), so no
// client that names its reply subjects after request ids (herd's SDK), or
// after random alphanumeric tokens (nats.go, natscli), waits on it.
const ProbeToken = "herd~probe"

// ProbeSubject returns the sibling of reply that presence probes go to:
// reply with its last token replaced by ProbeToken. A client whose
// request/reply inbox is one wildcard subscription (nats.go's
// "_INBOX.<nuid>.*", herd's SDK) receives the probe there and drops it as
// a token it does not know; when the client's connection is gone, nothing
// subscribes to the sibling. ok is false for a reply of a single token or
// one whose last token is ProbeToken: such a reply is not probed.
func ProbeSubject(reply string) (subject string, ok bool) {
	i := strings.LastIndexByte(reply, '.')
	if i <= 0 || reply[i+1:] == ProbeToken {
		return "", false
	}
	return reply[:i+1] + ProbeToken, true
}
