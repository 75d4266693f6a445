package pool

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Cores returns the cores this process may run on, in order.
func Cores() ([]int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("pool: cpu affinity: %w", err)
	}
	var out []int
	for c := 0; len(out) < set.Count(); c++ {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}
