package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nexo-project/nexo/internal/certs"
)

// certsCmd makes a development CA and certificates for trying TLS.
func (m *Main) certsCmd(_ context.Context, args []string) error {
	fs := m.flags("certs", "")
	dir := fs.String("dir", "certs", "`directory` to write ca.pem, server.pem, client.pem and their keys into")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated DNS `names` and IP addresses the server certificate is for")
	clientName := fs.String("client", "nexo-dev-client", "common `name` of the client certificate: its identity in the client list")
	valid := fs.Duration("valid", 365*24*time.Hour, "validity of every certificate")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	var hs []string
	for h := range strings.SplitSeq(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return usageError{"certs: --hosts is empty"}
	}
	if err := certs.Generate(*dir, hs, *clientName, *valid); err != nil {
		return err
	}
	d := func(f string) string { return filepath.Join(*dir, f) }
	fmt.Fprintf(m.Stdout, `Wrote a development CA and certificates to %s (for testing only).
Serve TLS, requiring client certificates (mutual TLS):
  nexo serve --tls-cert %s --tls-key %s --tls-client-ca %s
Call it:
  nexo call --tls-ca %s --tls-cert %s --tls-key %s math.add 2 3
`, *dir, d("server.pem"), d("server-key.pem"), d("ca.pem"), d("ca.pem"), d("client.pem"), d("client-key.pem"))
	return nil
}
