package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/live"
	"github.com/sutazai/herd/internal/ops"
	"github.com/sutazai/herd/internal/optimizer"
	"github.com/sutazai/herd/internal/stack"
)

// run runs the optimizer, its live page and its HTTP server until ctx
// ends. The HTTP address is bound first: a port in use fails at once.
func run(ctx context.Context, c config.Config, log *zap.Logger) error {
	hs, err := ops.Listen(c.HTTP.Listen)
	if err != nil {
		return err
	}
	nc, err := stack.Connect(c, "herd-optimizer")
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := stack.Provision(ctx, nc, c); err != nil {
		return err
	}
	reg := ops.NewRegistry()
	o, err := optimizer.New(ctx, c.Optimizer, nc, log, reg)
	if err != nil {
		return err
	}
	lnc, err := stack.Connect(c, "herd-live")
	if err != nil {
		return err
	}
	defer lnc.Close()
	lc, err := live.New(lnc, live.DefaultConfig(), log)
	if err != nil {
		return err
	}
	mux := ops.Handler(reg, stack.Ready(nc))
	lc.Mount(mux)
	// The live page's collector stops with the HTTP server, which ends its
	// event streams so that the server can shut down.
	return cli.Together(ctx, o.Run, func(ctx context.Context) error {
		return cli.Together(ctx, lc.Run, func(ctx context.Context) error { return hs.Serve(ctx, mux, log) })
	})
}

// report prints the --once report of kinds to out, stores it unless
// --no-store and writes its JSON to --json.
func report(ctx context.Context, c config.Config, kinds []string, rf *reportFlags, out io.Writer) error {
	nc, err := stack.Connect(c, "herd-optimizer")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r, err := optimizer.Once(ctx, js, optimizer.OnceConfig{
		Kinds: kinds, Window: rf.window, BatchSize: c.Dispatcher.BatchSize, MaxWait: c.Dispatcher.MaxWait,
		Context: c.Optimizer.Context, NumCtx: c.Worker.NumCtx, Auto: c.Dispatcher.Auto,
	}, time.Now())
	if err != nil {
		return err
	}
	if !rf.noStore {
		if err := r.Store(ctx, js); err != nil {
			return err
		}
	}
	if err := r.WriteText(out); err != nil {
		return err
	}
	switch rf.jsonPath {
	case "":
		return nil
	case "-":
		return r.WriteJSON(out)
	}
	f, err := os.Create(rf.jsonPath)
	if err != nil {
		return err
	}
	if err := r.WriteJSON(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
