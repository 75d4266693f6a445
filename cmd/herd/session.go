package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sutazai/herd/internal/cli"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/wire"
)

var (
	// errNoCaptureStream is returned when HERD_CAPTURE does not exist.
	errNoCaptureStream = errors.New("stream " + wire.StreamCapture + " does not exist: run herd up or a dispatcher first")
	// errNoControl is returned when herd_control does not exist.
	errNoControl = errors.New("bucket " + wire.BucketControl + " does not exist: run herd up or a dispatcher first")
)

// session is a command's configuration and JetStream connection.
type session struct {
	cfg config.Config
	nc  *nats.Conn
	js  jetstream.JetStream
}

// connect loads the configuration (with --nats) and connects to NATS.
func connect(cmd *cobra.Command, path, name string) (*session, error) {
	c, log, err := cli.Load(cmd.Flags(), path, cli.FlagKeys{"nats": "nats.url"})
	if err != nil {
		return nil, &exitError{2, err}
	}
	_ = log.Sync()
	nc, err := stack.Connect(c, name, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s (is herd up running, or --nats set?): %w", c.NATS.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &session{cfg: c, nc: nc, js: js}, nil
}

// captureStream returns HERD_CAPTURE, or errNoCaptureStream.
func (s *session) captureStream(ctx context.Context) (jetstream.Stream, error) {
	st, err := s.js.Stream(ctx, wire.StreamCapture)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, errNoCaptureStream
	case err != nil:
		return nil, s.jsError("stream "+wire.StreamCapture, err)
	}
	return st, nil
}

// control returns the herd_control bucket, or errNoControl.
func (s *session) control(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, wire.BucketControl)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return nil, errNoControl
	case err != nil:
		return nil, s.jsError("bucket "+wire.BucketControl, err)
	}
	return kv, nil
}

// jsError explains a failure to open what: JetStream off on the server
// herd was pointed at, or the error itself.
func (s *session) jsError(what string, err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return fmt.Errorf("JetStream is not enabled on %s: run herd up or point --nats at herd's server", s.cfg.NATS.URL)
	}
	return fmt.Errorf("%s: %w", what, err)
}
