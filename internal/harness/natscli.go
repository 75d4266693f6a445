package harness

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/sutazai/herd/internal/wire"
)

// CLIReply is what `nats request` of the nats CLI printed.
type CLIReply struct {
	// Status is the reply's Herd-Status header, empty when it had none
	// (no reply, or an empty lookup).
	Status string
	// Body is the reply's JSON body (its last line starting with "{").
	Body string
	// Out is everything the CLI printed.
	Out string
}

// NATSRequest runs the nats CLI at cli (testbin.Tool(t, "nats")):
// `nats --server url --timeout timeout request [-H h]... subject body`,
// and returns what it printed. The error is the CLI's exit error. A
// request that times out prints no reply (v0.5 exits 0 then): Status is
// empty.
func NATSRequest(cli, url, timeout, subject, body string, headers ...string) (CLIReply, error) {
	args := []string{"--server", url, "--timeout", timeout, "request"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, subject, body)
	out, err := exec.Command(cli, args...).CombinedOutput()
	r := CLIReply{Out: string(out)}
	if err != nil {
		return r, fmt.Errorf("nats request %s: %w\n%s", subject, err, out)
	}
	for line := range strings.Lines(r.Out) {
		line = strings.TrimSpace(line)
		// Headers are printed after a time stamp: "20:12:27 Herd-Status: 200".
		if _, v, ok := strings.Cut(line, " "+wire.HdrStatus+": "); ok {
			r.Status = v
		}
		if strings.HasPrefix(line, "{") {
			r.Body = line
		}
	}
	return r, nil
}
