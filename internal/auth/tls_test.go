package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/ollama/ollama/api"

	"github.com/sutazai/herd/client"
	"github.com/sutazai/herd/internal/auth"
	"github.com/sutazai/herd/internal/config"
	"github.com/sutazai/herd/internal/stack"
	"github.com/sutazai/herd/internal/wire"
)

// certs writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, into a temporary directory.
type certs struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func makeCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	c := certs{ca: write("ca.pem", "CERTIFICATE", caDER)}
	c.serverCert, c.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	c.clientCert, c.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return c
}

// TestTLS: herd up with access control and TLS that requires client
// certificates: the in-process services run, an agent with the CA and a
// client certificate gets an answer, a service connecting through
// stack.Connect with nats.tls works, and clients without TLS or without a
// certificate are refused.
func TestTLS(t *testing.T) {
	cs := makeCerts(t)
	url := upWith(t, func(c *config.Config) {
		c.Server.TLS = auth.TLSConfig{CA: cs.ca, Cert: cs.serverCert, Key: cs.serverKey}
	})
	withCert := auth.TLSConfig{CA: cs.ca, Cert: cs.clientCert, Key: cs.clientKey}

	opts, err := auth.Client{User: "alice", Password: password("alice"), InboxPrefix: client.AgentInbox("alice"), TLS: withCert}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("alice over TLS: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("connection without TLS")
	}
	hc, err := client.New(nc, client.WithAgent("alice"), client.WithInboxPrefix(client.AgentInbox("alice")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hc.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if r, _, err := hc.Generate(ctx, &api.GenerateRequest{Model: "herd-tiny", Prompt: "secure"}); err != nil || r.Response != "echo: secure" {
		t.Fatalf("answer over TLS: %v %+v", err, r)
	}

	// A separate service, configured as from herd.yaml.
	sc := config.Default()
	sc.NATS.URL = url
	sc.NATS.User, sc.NATS.Password = auth.Operator, password(auth.Operator)
	sc.NATS.TLS = withCert
	onc, err := stack.Connect(sc, "operator")
	if err != nil {
		t.Fatalf("stack.Connect over TLS: %v", err)
	}
	defer onc.Close()
	if _, err := onc.Request("$JS.API.STREAM.INFO."+wire.StreamReq, nil, 10*time.Second); err != nil {
		t.Fatalf("operator stream info over TLS: %v", err)
	}

	for name, o := range map[string][]nats.Option{
		"no tls":  {nats.UserInfo("alice", password("alice"))},
		"no cert": mustOptions(t, auth.Client{User: "alice", Password: password("alice"), TLS: auth.TLSConfig{CA: cs.ca}}),
	} {
		if c, err := nats.Connect(url, append(o, nats.Timeout(5*time.Second))...); err == nil {
			c.Close()
			t.Errorf("%s: connection accepted", name)
		}
	}
}

func mustOptions(t *testing.T, c auth.Client) []nats.Option {
	t.Helper()
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	return o
}
