package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/certs"
	"github.com/nexo-project/nexo/internal/status"
)

// TestTLS: with a certificate, a key and a client CA, the native, web and
// admin doors speak TLS only and require a client certificate; the
// certificate's subject is the client's identity; the legacy door stays
// plain (and is warned about). nexo certs makes everything needed.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	if out, _, err := run(nil, "certs", "--dir", dir, "--client", "alice"); err != nil || !strings.Contains(out, "--tls-client-ca") {
		t.Fatalf("nexo certs: %v\n%s", err, out)
	}
	if _, _, err := run(nil, "certs", "--dir", dir); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("certs over existing files: %v", err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	addrs := serve(t, nil, "--tls-cert", f("server.pem"), "--tls-key", f("server-key.pem"), "--tls-client-ca", f("ca.pem"))
	tlsArgs := []string{"--tls-ca", f("ca.pem"), "--tls-cert", f("client.pem"), "--tls-key", f("client-key.pem")}

	out, _, err := run(nil, append([]string{"call", "--addr", addrs["native"]}, append(tlsArgs, "math.add", "2", "3")...)...)
	if err != nil || out != "5\n" {
		t.Fatalf("call over mutual TLS: %q %v", out, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plain TCP", nil, "BAD_FRAME: this door speaks TLS"}, // not a bare EOF
		{"no client certificate", []string{"--tls-ca", f("ca.pem")}, "certificate required"},
		{"unknown server CA", []string{"--tls", "--tls-cert", f("client.pem"), "--tls-key", f("client-key.pem")}, "certificate signed by unknown authority"},
		{"wrong server name", append([]string{"--tls-server-name", "elsewhere.example"}, tlsArgs...), "elsewhere.example"},
	} {
		_, _, err := run(nil, append(append([]string{"call", "--addr", addrs["native"], "--timeout", "3s"}, tc.args...), "math.add", "1", "1")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}

	// The identity shows in the client list.
	cfg, err := certs.ClientConfig(f("ca.pem"), f("client.pem"), f("client-key.pem"), "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), addrs["native"], &client.Options{Name: "mtls", TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.Call(context.Background(), "sys.clients", nil)
	if err != nil {
		t.Fatal(err)
	}
	var snap status.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil || len(snap.Clients) == 0 || snap.Clients[0].Identity != "CN=alice,O=nexo dev" {
		t.Errorf("client list %s: want identity CN=alice,O=nexo dev", raw)
	}

	// TLS 1.1 and older are refused.
	old := cfg.Clone()
	old.MinVersion, old.MaxVersion, old.ServerName = tls.VersionTLS10, tls.VersionTLS11, "127.0.0.1"
	if conn, err := tls.Dial("tcp", addrs["native"], old); err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	nc, err := tls.Dial("tcp", addrs["native"], &tls.Config{RootCAs: cfg.RootCAs, Certificates: cfg.Certificates, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if v := nc.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(v))
	}
	nc.Close()

	// HTTPS on the web and admin doors, with the client certificate.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	for _, u := range []string{"https://" + addrs["admin"] + "/livez", "https://" + addrs["web"] + "/nexo.js"} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	resp, err := hc.Post("https://"+addrs["web"]+"/rpc", "application/json", strings.NewReader(`{"jsonrpc":"2.0","method":"math.mul","params":[6,7],"id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"result":42`) {
		t.Errorf("POST /rpc over HTTPS: %s", body)
	}
	// Plain HTTP to a TLS door gets nothing useful.
	if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + addrs["admin"] + "/livez"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served by a TLS door")
		}
	}
	// TLS to a plain door says so.
	plain := serveDoors(t, 1, nil, "--legacy-addr", "", "--web-addr", "", "--admin-addr", "")
	if _, _, err := run(nil, "call", "--addr", plain["native"], "--tls-ca", f("ca.pem"), "math.add", "1", "1"); err == nil || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Errorf("TLS to a plain door: %v", err)
	}
	// The legacy door stays plain TCP.
	lc, err := net.DialTimeout("tcp", addrs["legacy"], 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lc.Close()
}

// TestTLSFlags: TLS flags that cannot work are usage errors.
func TestTLSFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-cert", "x.pem"},
		{"--tls-key", "x.pem"},
		{"--tls-client-ca", "ca.pem"},
		{"--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent-key.pem"},
	} {
		_, _, err := run(nil, append([]string{"serve", "--native-addr", "127.0.0.1:0"}, args...)...)
		if _, ok := err.(usageError); !ok {
			t.Errorf("serve %v: %v, want a usage error", args, err)
		}
	}
}

// TestServeAuthFlags: client tokens from a file and the environment, and
// the legacy door's allowed networks, as an operator sets them.
func TestServeAuthFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# team tokens\nfile-token\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := serve(t, map[string]string{"NEXO_TOKENS": "env-token"}, "--token-file", file, "--legacy-allow", "10.0.0.0/8, 127.0.0.2")
	for _, tc := range []struct {
		env  map[string]string
		args []string
		ok   bool
	}{
		{nil, nil, false},
		{nil, []string{"--token", "wrong"}, false},
		{nil, []string{"--token", "file-token"}, true},
		{map[string]string{"NEXO_TOKEN": "env-token"}, nil, true},
	} {
		out, _, err := run(tc.env, append(append([]string{"call", "--addr", addrs["native"]}, tc.args...), "math.add", "2", "3")...)
		if tc.ok && (err != nil || out != "5\n") {
			t.Errorf("%v %v: %q %v", tc.env, tc.args, out, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED")) {
			t.Errorf("%v %v: %v, want UNAUTHORIZED", tc.env, tc.args, err)
		}
	}
	c, err := net.DialTimeout("tcp", addrs["legacy"], 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 16)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("legacy door from 127.0.0.1: read %d, %v; want closed", n, err)
	}
	for _, bad := range [][]string{{"--legacy-allow", "not-a-net"}, {"--token-file", "/nonexistent"}} {
		if _, _, err := run(nil, append([]string{"serve", "--native-addr", "127.0.0.1:0"}, bad...)...); err == nil {
			t.Errorf("serve %v succeeded", bad)
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestCertsHint: the commands nexo certs prints work as printed (with the
// test's own address), also for a certificate that does not name
// 127.0.0.1, the address the printed call dials.
func TestCertsHint(t *testing.T) {
	for _, hosts := range []string{"localhost,127.0.0.1,::1", "nexo.example.com"} {
		dir := t.TempDir()
		out, _, err := run(nil, "certs", "--dir", dir, "--hosts", hosts)
		if err != nil {
			t.Fatal(err)
		}
		var serveArgs, callArgs []string
		for line := range strings.Lines(out) {
			switch f := strings.Fields(line); {
			case len(f) > 1 && f[0] == "nexo" && f[1] == "serve":
				serveArgs = f[2:]
			case len(f) > 1 && f[0] == "nexo" && f[1] == "call":
				callArgs = f[1:]
			}
		}
		if serveArgs == nil || callArgs == nil {
			t.Fatalf("hosts %s: no serve or call line in:\n%s", hosts, out)
		}
		addrs := serve(t, nil, serveArgs...)
		got, _, err := run(nil, append(callArgs, "--addr", addrs["native"])...)
		if err != nil || got != "5\n" {
			t.Errorf("hosts %s: %v as printed (with --addr %s): %q, %v", hosts, callArgs, addrs["native"], got, err)
		}
	}
}
