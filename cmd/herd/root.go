package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// exitError carries an exit code for main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "herd",
		Short:         "herd dispatches AI agents' inference requests to Ollama over NATS",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newUp(), newAsk(), newTestModel())
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}

// commands are the subcommands that register themselves from their own
// files (capture, replay, loadgen, bench), in file order.
var commands []func() *cobra.Command

func register(f func() *cobra.Command) { commands = append(commands, f) }
