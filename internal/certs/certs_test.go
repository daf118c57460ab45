package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGenerate: the server certificate verifies against the CA for every
// host and for server use only; the client certificate for client use,
// with its name as the subject; keys are private to their owner.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, []string{"localhost", "127.0.0.1", "::1"}, "alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	pool, err := loadPool(f("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(name string) *x509.Certificate {
		pair, err := tls.LoadX509KeyPair(f(name+".pem"), f(name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv, cli := leaf("server"), leaf("client")
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "elsewhere.example"}); err == nil {
		t.Error("server certificate verifies for a host it was not made for")
	}
	if _, err := cli.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the server certificate passes as a client certificate")
	}
	if cli.Subject.String() != "CN=alice,O=nexo dev" {
		t.Errorf("client subject %q", cli.Subject)
	}
	if !srv.IPAddresses[1].Equal(net.ParseIP("::1")) {
		t.Errorf("server IPs %v", srv.IPAddresses)
	}
	for _, k := range []string{"ca-key.pem", "server-key.pem", "client-key.pem"} {
		if st, err := os.Stat(f(k)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", k, st.Mode(), err)
		}
	}
	if err := Generate(dir, []string{"localhost"}, "bob", time.Hour); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("second Generate: %v", err)
	}
}

// TestConfigErrors: settings that cannot work are refused with a message
// naming what is missing.
func TestConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"key without cert", second(ServerConfig("", "k.pem", "")), "need --tls-cert"},
		{"cert without key", second(ServerConfig("c.pem", "", "")), "needs --tls-key"},
		{"missing files", second(ServerConfig(missing, missing, "")), "no such file"},
		{"client cert without key", second(ClientConfig("", missing, "", "")), "both --tls-cert and --tls-key"},
		{"missing CA", second(ClientConfig(missing, "", "", "")), "no such file"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, tc.err, tc.want)
		}
	}
	if cfg, err := ServerConfig("", "", ""); cfg != nil || err != nil {
		t.Errorf("no TLS flags: %v %v, want nil, nil", cfg, err)
	}
}

func second(_ *tls.Config, err error) error { return err }
