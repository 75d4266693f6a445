// Package faults is herd's multi-process fault suite (`make test-faults`).
//
// Each test starts herd as it runs across machines, every part its own
// process: a real nats-server (bin/nats-server, JetStream fsyncing every
// write), the dispatcher, two workers and the optimizer (built from cmd/),
// and one managed Ollama serving the generated herd-tiny and herd-slow
// models, which the workers reach through a reverse proxy the test owns.
// Agents send requests through the Go SDK while the test kills, restarts,
// stops or starves a part; a ledger records every request id JetStream
// acknowledged and every final outcome that came back for it (an answer,
// an error reply, a dead letter in HERD_DLQ with its reason). Each scenario
// ends with the ledger's check: every acknowledged id has exactly one final
// outcome, printed as
//
//	ledger: sent=N acked=N unacked=0 lost=0 duplicated=0 spliced=0 answered=N errors=N dead=N replies=N recovered=N
//
// replies counts the final replies seen on the agents' inboxes (a second
// one for an id is a duplicate even though the SDK drops it); recovered
// counts answers the SDK found in herd_results because their reply was
// sent while it was reconnecting.
//
// The harness (harness_test.go, built on internal/harness: its processes
// are harness.Procs, its ledger a harness.Ledger, its Ollama from
// harness.StartOllama) is the package's API for scenarios:
//
//	h := start(t, options{})          // nats-server, dispatcher, 2 workers, optimizer, Ollama
//	l := h.Ledger()                   // an agent keeping a ledger
//	stop := l.Load(every, makeReq)    // send continuously
//	h.Kill("worker-1"); h.Restart("worker-1")
//	h.Proxy.Fail503(10 * time.Second) // Ollama answers 503 for a while
//	stop(); l.Wait(ctx); l.Check(t)
//
// The suite is slow and needs the pinned tools (make tools), so `go test
// ./...` skips it unless HERD_FAULTS=1; `make test-faults` sets it together
// with HERD_REQUIRE_OLLAMA=1, which turns missing tools into failures.
package faults
