// Package managed starts and supervises herd's own `ollama serve`.
//
// A managed instance runs the pinned Ollama binary on a private loopback
// port, with its own HOME and models folder under a state directory, in its
// own process group (so its model runners can be stopped with it), and
// optionally pinned to a set of CPUs (Linux). Start waits until the server
// answers and imports the project's generated test models (package
// testmodel) that it does not have yet. A supervising goroutine restarts the
// server on the same port whenever it exits while the caller's context is
// live, and stops it (SIGTERM, then SIGKILL after 5 s) when the context ends.
//
// Typical use:
//
//	inst, err := managed.Start(ctx, cfg, log)
//	if err != nil { ... }
//	client := api.NewClient(mustParse(inst.URL()), http.DefaultClient)
//	...
//	<-ctx.Done()
//	inst.Wait()
//
// The server's output goes to <Dir>/ollama.log (the previous run's log is
// kept as ollama.log.1); errors about the server carry the last lines of it.
package managed
