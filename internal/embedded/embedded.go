// Package embedded runs a NATS server with JetStream inside the process:
// the default for one machine (`herd up`) and for tests.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrNotReady is returned when the server does not accept connections in time.
var ErrNotReady = errors.New("embedded nats server not ready")

// Config is the embedded server's configuration.
type Config struct {
	// Listen is host:port for clients; port -1 picks a free one. Default 127.0.0.1:4222.
	Listen string `koanf:"listen"`
	// DataDir holds JetStream's files. Default "data".
	DataDir string `koanf:"data"`
	// SyncAlways makes JetStream fsync every write, so a crash of the
	// machine loses nothing acknowledged. Default true.
	SyncAlways bool `koanf:"sync_always"`
	// MaxPayload is the largest message in bytes. Default 8 MiB (batches
	// carry up to 16 requests).
	MaxPayload int32 `koanf:"max_payload"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:4222", DataDir: "data", SyncAlways: true, MaxPayload: 8 << 20}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("embedded: listen %q: %w", c.Listen, err)
	}
	if c.DataDir == "" {
		return errors.New("embedded: data directory is required")
	}
	return nil
}

// Start starts the server and waits until it accepts connections. The
// caller owns the server and must call Shutdown (and WaitForShutdown).
func Start(c Config) (*server.Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(c.Listen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded: port %q: %w", portStr, err)
	}
	opts := &server.Options{
		ServerName: "herd",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.DataDir,
		SyncAlways: c.SyncAlways,
		MaxPayload: c.MaxPayload,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, ErrNotReady
	}
	return s, nil
}
