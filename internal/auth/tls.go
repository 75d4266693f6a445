package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TLSConfig is one side of a TLS connection. For a client: CA is the
// certificate authority that signed the server's certificate (empty: the
// system's), Cert and Key an optional client certificate. For the server:
// Cert and Key are required, and with CA set every client must present a
// certificate signed by it. Empty fields mean none; all empty means no TLS.
type TLSConfig struct {
	// CA is a PEM file of trusted certificate authorities. Default empty.
	CA string `koanf:"ca"`
	// Cert is a PEM certificate file. Default empty.
	Cert string `koanf:"cert"`
	// Key is the PEM private key file of Cert. Default empty.
	Key string `koanf:"key"`
}

// Enabled reports whether any TLS setting is given.
func (t TLSConfig) Enabled() bool { return t.CA != "" || t.Cert != "" || t.Key != "" }

// Validate reports a client or server setting that cannot work: a
// certificate without its key or a key without its certificate.
func (t TLSConfig) Validate() error {
	if (t.Cert == "") != (t.Key == "") {
		return fmt.Errorf("%w: cert and key must be given together", ErrTLS)
	}
	return nil
}

// ServerTLS returns the server's TLS configuration; it requires Cert and
// Key, and verifies client certificates when CA is set.
func (t TLSConfig) ServerTLS() (*tls.Config, error) {
	if t.Cert == "" || t.Key == "" {
		return nil, fmt.Errorf("%w: the server needs cert and key", ErrTLS)
	}
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA, Verify: t.CA != ""})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLS, err)
	}
	return c, nil
}

// ClientTLS returns a client's TLS configuration, or nil when none is set.
func (t TLSConfig) ClientTLS() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("%w: ca: %v", ErrTLS, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca %s holds no certificate", ErrTLS, t.CA)
		}
		c.RootCAs = pool
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %v", ErrTLS, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Client is how a process logs in to NATS.
type Client struct {
	// User and Password log in with a user of the server configuration.
	User     string
	Password string
	// Creds is a NATS credentials file (JWT and nkey seed).
	Creds string
	// InboxPrefix replaces "_INBOX"; empty means DefaultInbox(User).
	InboxPrefix string
	TLS         TLSConfig
}

// Options returns the nats.Options for c.
func (c Client) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	prefix := c.InboxPrefix
	if prefix == "" {
		prefix = DefaultInbox(c.User)
	}
	if prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	tc, err := c.TLS.ClientTLS()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}
