// Package slo holds herd's service-level targets: per priority (and per
// agent profile where set) the end-to-end p95 and p99 latency and the
// error rate a deployment must keep. One configuration (the `slo` section)
// is read by everything that judges service: the alert rules `herd alerts`
// generates, the live page's colours, `herd health` and the replay
// report. The optimizer writes the targets in force to herd_control (key
// ControlKey) so that the live page and `herd health` of a running
// deployment read the same ones.
//
// An error, for every reader, is an outcome that is herd's or the model's
// fault: a 5xx status or 429 queue_full; a caller's bad input (400, 404),
// its cancel (499) are not.
package slo
