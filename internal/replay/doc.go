// Package replay plays captured herd traffic (internal/capture) back
// against a herd deployment, open loop, and reports what happened like a
// load-testing tool: counts, errors by code, lost and duplicated answers,
// throughput, cache hit rate and HDR latency histograms overall, per
// priority and per model, with a per-second time series.
//
// The package is a few pure cores and a thin I/O shell:
//
//   - Plan (plan.go) turns records into a schedule of Steps: which record
//     to send when, scaled by the speed, filtered, looped and cut at a
//     duration. It does no I/O and reads no clock.
//   - Collector (collector.go) accounts for every request by its sequence
//     number and builds the Report. Every event carries its own time, so it
//     is tested with made-up times.
//   - Report (report.go, html.go, compare.go) renders as text, JSON and a
//     self-contained HTML page with inline SVG plots, and compares two
//     reports side by side.
//   - Progress (progress.go) draws the progress line on a terminal, or
//     prints plain lines to a log.
//   - Replayer (replay.go) is the shell: it publishes each Step to
//     herd.req.<priority>.<agent> through JetStream (the publish ack is
//     herd's promise) at its intended time, under a new request id
//     <run-id>-<seq>, and reads the answers on its own inbox.
//
// Latency is measured from a request's intended send time, never from when
// it was actually sent, so a replay client that falls behind (or hits its
// bound on outstanding requests) shows up as latency and as client backlog
// instead of silently slowing the schedule (no coordinated omission).
package replay
