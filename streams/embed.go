// Package streams holds herd's JetStream streams, consumers and KV buckets
// as JSON in the NATS API's own format (durations in nanoseconds), so the
// files also work with `nats stream add --config`. They are embedded in
// every binary and created or updated at start-up by internal/provision.
package streams

import "embed"

// FS holds the *.json definitions.
//
//go:embed *.json
var FS embed.FS
