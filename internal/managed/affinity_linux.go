package managed

import (
	"fmt"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// startPinned starts cmd restricted to cpus (all CPUs when empty).
//
// A child inherits the CPU affinity of the thread that forks it, and Go
// forks on the calling goroutine's thread. So the fork runs on a locked
// thread whose own affinity is set to cpus first: the server and every
// thread and runner it creates are pinned from their first instruction,
// which setting the affinity of the child's pid afterwards (taskset -p,
// sched_setaffinity) cannot promise for threads the Go runtime of the
// child starts early. The thread is never unlocked, so the runtime
// discards it when the goroutine ends instead of reusing its narrowed
// affinity.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		set.Set(c)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("%w %v: %w", ErrPinning, cpus, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}
