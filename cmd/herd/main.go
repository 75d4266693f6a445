// Command herd is herd's operator and agent command line: `herd up` runs
// everything in one process, `herd ask` sends one request, `herd testmodel`
// writes the generated test model.
package main

import (
	"os"

	"github.com/sutazai/herd/internal/cli"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		cli.Fail(exitCode(err), err)
	}
	os.Exit(0)
}
