// Package harness is the one harness of herd's process-level tests
// (internal/faults, internal/cluster, internal/proctest) and of the tests
// that run a real Ollama (e2e, modelbench, optimizer, perf):
//
//   - Proc: a process a test starts, kills, stops and restarts, its output
//     kept over all its runs;
//   - Ledger: the delivery ledger, every request id an agent sent, whether
//     JetStream acknowledged it, and every final outcome that came back for
//     it (replies seen on the wire, dead letters), counted as lost,
//     duplicated or spliced;
//   - StartOllama and Ollama: a managed real Ollama serving herd's
//     generated models, skipped (or failed, with HERD_REQUIRE_OLLAMA set,
//     see testbin) when the pinned binary is missing.
//
// It is a library package (no _test.go files are imported) and holds no
// package-level state: each test owns what it starts.
package harness
