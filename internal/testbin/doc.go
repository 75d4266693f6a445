// Package testbin gives tests that run herd as processes what they share:
// herd's commands built once per test binary (Binaries), the pinned tools
// that make tools installs into bin/ (Tool, Ollama) and free loopback ports
// (FreePort, FreePorts).
//
// A missing tool skips the test, or fails it when HERD_REQUIRE_OLLAMA is
// set to any non-empty value (make test sets it to 1), so that CI cannot
// pass by skipping. A package that calls Binaries removes the build in its
// TestMain with Cleanup.
package testbin
