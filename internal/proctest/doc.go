// Package proctest runs herd as users do: built binaries in separate
// processes (herd up; nats-server with dispatcher and worker), driven by
// the real nats CLI and herd ask. Its tests need bin/nats-server and bin/nats
// (make tools); they skip without them unless HERD_REQUIRE_OLLAMA is set.
package proctest
