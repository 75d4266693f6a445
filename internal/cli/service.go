package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/version"
)

// ExitUsage is the exit code of a service binary's usage or configuration
// error; any other error exits 1.
const ExitUsage = 2

// usageErr marks a usage or configuration error.
type usageErr struct{ err error }

func (e usageErr) Error() string { return e.err.Error() }
func (e usageErr) Unwrap() error { return e.err }

// Usage marks err as a usage or configuration error: Execute exits
// ExitUsage for it.
func Usage(err error) error { return usageErr{err} }

// NewService returns the root command of a service binary (dispatcher,
// worker, optimizer): no arguments, --help, --version printing Version,
// (version.String) and flag errors that are usage errors. Its RunE is the caller's.
func NewService(use, short, long string) *cobra.Command {
	cmd := &cobra.Command{
		Use:           use,
		Short:         short,
		Long:          long,
		Version:       version.String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	args := cmd.Args
	cmd.Args = func(c *cobra.Command, a []string) error {
		if err := args(c, a); err != nil {
			return Usage(err)
		}
		return nil
	}
	return cmd
}

// Execute runs cmd and exits the process: 0 on success, ExitUsage for a
// usage error (Usage, a bad flag), 1 for any other, after printing it.
func Execute(cmd *cobra.Command) {
	err := cmd.Execute()
	if err == nil {
		os.Exit(0)
	}
	var ue usageErr
	if errors.As(err, &ue) {
		Fail(ExitUsage, fmt.Errorf("%s: %w", cmd.Name(), err))
	}
	Fail(1, fmt.Errorf("%s: %w", cmd.Name(), err))
}

// Together runs every f with a context that ends when ctx ends or the
// first f returns, and returns when all have returned: the first non-nil
// error, or nil. A process runs its component and its HTTP server with it, so
// that either one stopping stops the other.
func Together(ctx context.Context, fs ...func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg sync.WaitGroup
		// mu guards first.
		mu    sync.Mutex
		first error
	)
	for _, f := range fs {
		wg.Go(func() {
			err := f(ctx)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	return first
}
