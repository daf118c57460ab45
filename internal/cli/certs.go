package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/internal/certs"
)

// certsCmd makes a development CA and certificates for trying TLS.
func (m *Main) certsCmd(fs *pflag.FlagSet) runFunc {
	dir := fs.String("dir", "certs", "`directory` to write ca.pem, server.pem, client.pem and their keys into")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated DNS `names` and IP addresses the server certificate is for")
	clientName := fs.String("client", "nexo-dev-client", "common `name` of the client certificate: its identity in the client list")
	valid := fs.Duration("valid", 365*24*time.Hour, "validity of every certificate")
	asJSON := fs.Bool("json", false, `print the files written as JSON: {"dir":...,"ca":...,"server_cert":...}`)
	return func(_ context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("certs takes no arguments, got %q", args)}
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
		if *asJSON {
			out, _ := json.Marshal(map[string]string{ // strings always marshal
				"dir": *dir, "ca": d("ca.pem"), "ca_key": d("ca-key.pem"),
				"server_cert": d("server.pem"), "server_key": d("server-key.pem"),
				"client_cert": d("client.pem"), "client_key": d("client-key.pem"),
			})
			_, err := fmt.Fprintln(m.Stdout, string(out))
			return err
		}
		// The call below dials the default address, 127.0.0.1: a server
		// certificate that does not name it is checked against a name it has.
		serverName := ""
		if !slices.Contains(hs, "127.0.0.1") {
			serverName = " --tls-server-name " + hs[0]
		}
		fmt.Fprintf(m.Stdout, `Wrote a development CA and certificates to %s (for testing only).
Serve TLS, requiring client certificates (mutual TLS):
  nexo serve --tls-cert %s --tls-key %s --tls-client-ca %s
Call it:
  nexo call --tls-ca %s --tls-cert %s --tls-key %s%s math.add 2 3
`, *dir, d("server.pem"), d("server-key.pem"), d("ca.pem"), d("ca.pem"), d("client.pem"), d("client-key.pem"), serverName)
		return nil
	}
}
