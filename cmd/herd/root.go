package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/version"
)

// exitError carries an exit code for main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitUsage is the exit code of a usage or configuration error (sysexits'
// EX_USAGE): not 1 or 2, which herd health and status use for degraded and
// down.
const exitUsage = 64

// usageError marks err as a usage or configuration error.
func usageError(err error) error { return &exitError{exitUsage, err} }

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
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newUp(), newAsk(), newTestModel())
	for _, f := range commands {
		root.AddCommand(f())
	}
	// Unknown flags, commands and wrong arguments are usage errors. The
	// root runs (its help) so that an unknown command reaches its Args.
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	usageArgs(root)
	return root
}

// usageArgs makes the argument errors of c and its subcommands usage
// errors.
func usageArgs(c *cobra.Command) {
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageError(err)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// commands are the subcommands that register themselves from their own
// files (capture, replay, loadgen, bench, cache), in file order.
var commands []func() *cobra.Command

func register(f func() *cobra.Command) { commands = append(commands, f) }
