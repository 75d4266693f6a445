// Package natstest starts a real in-process NATS server with JetStream for
// tests, provisions herd's streams, and polls for conditions.
package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sutazai/herd/internal/embedded"
	"github.com/sutazai/herd/internal/provision"
)

// Server is a running test server.
type Server struct {
	*server.Server
	URL string
}

// Start starts a server on a free loopback port with its store in a
// temporary directory; it is shut down when the test ends. Writes are not
// fsynced (tests do not survive a machine crash).
func Start(t testing.TB) *Server {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.Listen = "127.0.0.1:-1"
	cfg.DataDir = t.TempDir()
	cfg.SyncAlways = false
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return &Server{Server: s, URL: s.ClientURL()}
}

// Connect returns a connection closed when the test ends.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Provision creates herd's streams, consumers and buckets with o.
func (s *Server) Provision(t testing.TB, o provision.Overrides) *provision.Definitions {
	t.Helper()
	d, err := provision.Load(o)
	if err != nil {
		t.Fatal(err)
	}
	_, js := s.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return d
}

// CheckFor calls f every step until it returns nil or total has passed,
// then fails the test with f's last error.
func CheckFor(t testing.TB, total, step time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		time.Sleep(step)
	}
}

// Flush waits until the server has processed everything nc sent so far,
// its subscriptions included. A test that subscribes on one connection and
// waits for a message another connection (or process) publishes must
// flush first: otherwise the SUB may reach the server after the publish,
// and the message is lost.
func Flush(t testing.TB, nc *nats.Conn) {
	t.Helper()
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// WaitEmpty waits up to total until stream holds no message: in a
// work-queue stream (HERD_REQ, HERD_BATCH), until everything in it was
// acknowledged.
func WaitEmpty(t testing.TB, js jetstream.JetStream, stream string, total time.Duration) {
	t.Helper()
	CheckFor(t, total, 10*time.Millisecond, func() error {
		s, err := js.Stream(context.Background(), stream)
		if err != nil {
			return err
		}
		if n := s.CachedInfo().State.Msgs; n != 0 {
			return fmt.Errorf("%s holds %d messages", stream, n)
		}
		return nil
	})
}

// ShortDuplicates sets stream's JetStream duplicate window to d, so a test
// can send a request again under its id after the window, and returns the
// stream.
func ShortDuplicates(t testing.TB, js jetstream.JetStream, stream string, d time.Duration) jetstream.Stream {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Duplicates = d
	if st, err = js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return st
}
