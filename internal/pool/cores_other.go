//go:build !linux

package pool

import "runtime"

// Cores returns the cores this process may run on: 0 to NumCPU-1 (the
// pool's instances can be pinned on Linux only).
func Cores() ([]int, error) {
	out := make([]int, runtime.NumCPU())
	for i := range out {
		out[i] = i
	}
	return out, nil
}
