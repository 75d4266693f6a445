// Package provision creates or updates herd's streams, consumers and KV
// buckets from the definitions in the streams package, idempotently, so
// every service can run it at start-up.
package provision
