// Package embedded runs a NATS server with JetStream inside the process:
// the default for one machine (`herd up`) and for tests.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sutazai/herd/internal/auth"
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
	// Auth requires every client to log in with a user of AuthFile and
	// holds it to that user's permissions (internal/auth). Default false.
	Auth bool `koanf:"auth"`
	// AuthFile is a NATS server configuration with the accounts and users;
	// empty means herd's built-in roles (deploy/nats/auth.conf). Password
	// variables ($NATS_PASSWORD_<USER>) that are unset get random
	// values. Used only with Auth. Default empty.
	AuthFile string `koanf:"auth_file"`
	// TLS makes clients connect with TLS: cert and key are the server's,
	// and with ca set clients must present a certificate signed by it.
	// Default none.
	TLS auth.TLSConfig `koanf:"tls"`
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
	if c.TLS.Enabled() && (c.TLS.Cert == "" || c.TLS.Key == "") {
		return errors.New("embedded: tls needs cert and key")
	}
	return nil
}

// Start starts the server and waits until it accepts connections. The
// caller owns the server and must call Shutdown (and WaitForShutdown).
func Start(c Config) (*server.Server, error) {
	s, _, err := StartAuth(c)
	return s, err
}

// StartAuth is Start that also returns, with Auth, the password of every
// user by name, so that in-process services can log in as their roles.
// Without an AuthFile the built-in roles let the gateway act as
// gatewayAgents (the agents its API keys name) and no other.
func StartAuth(c Config, gatewayAgents ...string) (*server.Server, map[string]string, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	host, portStr, _ := net.SplitHostPort(c.Listen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: port %q: %w", portStr, err)
	}
	opts := &server.Options{}
	users := map[string]string{}
	if c.Auth {
		text, err := authConfig(c.AuthFile, gatewayAgents)
		if err != nil {
			return nil, nil, err
		}
		text, _ = auth.FillPasswords(text)
		if err := opts.ProcessConfigString(text); err != nil {
			return nil, nil, fmt.Errorf("embedded: auth config: %w", err)
		}
		for _, u := range opts.Users {
			users[u.Username] = u.Password
		}
	}
	if c.TLS.Enabled() {
		tc, err := c.TLS.ServerTLS()
		if err != nil {
			return nil, nil, fmt.Errorf("embedded: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSVerify = true, tc, c.TLS.CA != ""
		opts.TLSTimeout = 5
	}
	opts.ServerName = "herd"
	opts.Host, opts.Port = host, port
	opts.JetStream, opts.StoreDir, opts.SyncAlways = true, c.DataDir, c.SyncAlways
	opts.MaxPayload = c.MaxPayload
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, nil, ErrNotReady
	}
	return s, users, nil
}

// authConfig returns the text of the auth file, or the built-in roles.
func authConfig(path string, gatewayAgents []string) (string, error) {
	if path == "" {
		return auth.RenderWith(auth.ExampleAgents, gatewayAgents)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("embedded: auth file: %w", err)
	}
	return string(b), nil
}
