//go:build !linux

package managed

import (
	"fmt"
	"os/exec"
)

// startPinned starts cmd; pinning to cpus is supported on Linux only.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) > 0 {
		return fmt.Errorf("%w: cpu affinity is supported on linux only", ErrPinning)
	}
	return cmd.Start()
}
