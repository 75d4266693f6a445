// Package cli holds what every herd command shares: loading the
// configuration from file, environment and the flags the user set, and
// running a component under SIGINT/SIGTERM with a clear exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/config"
)

// FlagKeys maps a flag name to its configuration key.
type FlagKeys map[string]string

// Load reads the configuration: defaults, the file, HERD_* variables, then
// the flags in keys that the user set.
func Load(fs *pflag.FlagSet, path string, keys FlagKeys) (config.Config, *zap.Logger, error) {
	flags := map[string]any{}
	for name, key := range keys {
		f := fs.Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		flags[key] = f.Value.String()
	}
	c, err := config.Load(path, flags)
	if err != nil {
		return c, nil, err
	}
	log, err := c.Logger()
	if err != nil {
		return c, nil, err
	}
	return c, log, nil
}

// Run runs f with a context that ends on SIGINT or SIGTERM. A second
// signal exits at once.
func Run(f func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	err := f(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Fail prints err and exits with code.
func Fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "herd:", strings.TrimPrefix(err.Error(), "herd: "))
	os.Exit(code)
}
