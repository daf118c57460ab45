package web_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// do sends a request with the given headers (Host among them) and returns
// its status.
func do(t *testing.T, method, url, body string, hdr map[string]string) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(nexotest.NewRequest(t, method, url, body, hdr))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBrowserAttacks: a page of another site, open in a browser on the
// server's host, cannot use the web door or the admin API, even though
// loopback callers are admins by default. Each case was accepted before.
func TestBrowserAttacks(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	victim, w := nexotest.Hello(t, srv.Native, "victim")
	defer victim.Close()
	kick := `{"jsonrpc":"2.0","method":"sys.kick","params":[` + strconv.FormatUint(w.ClientID, 10) + `,"csrf"],"id":1}`
	rpc := "http://" + srv.Web + "/rpc"
	for _, tt := range []struct {
		name   string
		method string
		url    string
		body   string
		hdr    map[string]string
		want   int
	}{
		// A form or fetch() with a text/plain body needs no CORS preflight.
		{"text/plain POST from another site", "POST", rpc, kick,
			map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://attacker.example", "Sec-Fetch-Site": "cross-site"}, 415},
		{"text/plain POST, no Origin", "POST", rpc, kick, map[string]string{"Content-Type": "text/plain"}, 415},
		{"form POST", "POST", rpc, kick, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"no Content-Type", "POST", rpc, kick, nil, 415},
		{"JSON POST from another origin", "POST", rpc, kick,
			map[string]string{"Content-Type": "application/json", "Origin": "https://attacker.example"}, 403},
		{"JSON POST, Sec-Fetch-Site cross-site", "POST", rpc, kick,
			map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403},
		{"JSON POST from the same host, https scheme", "POST", rpc, kick,
			map[string]string{"Content-Type": "application/json", "Origin": "https://" + srv.Web}, 403},
		// DNS rebinding: attacker.example now resolves to 127.0.0.1.
		{"rebinding: the GUI", "GET", "http://" + srv.Web + "/", "", map[string]string{"Host": "attacker.example"}, 421},
		{"rebinding: POST /rpc", "POST", rpc, kick,
			map[string]string{"Host": "attacker.example:80", "Content-Type": "application/json", "Origin": "http://attacker.example:80"}, 421},
		{"rebinding: /ws", "GET", "http://" + srv.Web + "/ws", "",
			map[string]string{"Host": "attacker.example", "Origin": "http://attacker.example", "Connection": "Upgrade", "Upgrade": "websocket",
				"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 421},
		{"rebinding: admin client list", "GET", "http://" + srv.Admin + "/api/clients", "", map[string]string{"Host": "attacker.example"}, 421},
		{"admin API from a page", "GET", "http://" + srv.Admin + "/api/clients", "", map[string]string{"Origin": "http://" + srv.Admin}, 403},
		{"admin kick from a page", "DELETE", "http://" + srv.Admin + "/api/clients/" + strconv.FormatUint(w.ClientID, 10), "",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		// What must keep working.
		{"the GUI by address", "GET", "http://" + srv.Web + "/", "", nil, 200},
		{"the GUI as localhost", "GET", "http://" + srv.Web + "/", "", map[string]string{"Host": "localhost"}, 200},
		{"a program's JSON POST", "POST", rpc, `{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`,
			map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200},
		{"the GUI's own JSON POST", "POST", rpc, `{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`,
			map[string]string{"Content-Type": "application/json", "Origin": "http://" + srv.Web, "Sec-Fetch-Site": "same-origin"}, 200},
		{"admin API from a program", "GET", "http://" + srv.Admin + "/api/clients", "", nil, 200},
		{"metrics", "GET", "http://" + srv.Admin + "/metrics", "", nil, 200},
	} {
		if got := do(t, tt.method, tt.url, tt.body, tt.hdr); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	// A kick that got through would have sent GOODBYE before this answer.
	victim.Send(wire.AppendRequest(nil, 1, "math.add", nexotest.Operands(1, 2)))
	if f := victim.Read(); f.Type != wire.TypeResponse {
		t.Fatalf("the victim got %s: it was kicked", nexotest.String(f))
	}
}

// TestWebSocketMemoryFlood: one WebSocket sending 48 messages of the max
// frame, each a batch of half a million tiny elements, adds at most 64 MiB
// of heap: batches are counted before they are decoded, and a socket's
// messages in flight are bounded by bytes. It used to take about 1.7 GB.
func TestWebSocketMemoryFlood(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	runtime.GC()
	base := heap()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h := heap(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	msg := []byte("[" + strings.Repeat("1,", (1<<20)/2-2) + "1]") // one buffer: the client's garbage counts too
	for range 48 {
		if err := w.c.Write(context.Background(), websocket.MessageText, msg); err != nil {
			t.Fatal(err)
		}
	}
	for range 48 {
		if m := w.next(); m.Error == nil {
			t.Fatalf("a flood message was answered %+v", m)
		}
	}
	close(stop)
	<-sampled
	if grew := int64(peak.Load()) - int64(base); grew > 64<<20 {
		t.Errorf("heap grew %d MiB under the flood", grew>>20)
	}
}

// TestWebSocketCounts: an upgrade that fails (no upgrade headers: 426; a
// foreign origin: 403) is counted rejected, not accepted.
func TestWebSocketCounts(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	if code := do(t, "GET", "http://"+srv.Web+"/ws", "", nil); code != http.StatusUpgradeRequired {
		t.Fatalf("GET /ws without an upgrade: %d", code)
	}
	if code := do(t, "GET", "http://"+srv.Web+"/ws", "", map[string]string{"Origin": "http://attacker.example"}); code != http.StatusForbidden {
		t.Fatalf("GET /ws from a foreign origin: %d", code)
	}
	if a, r := srv.Metric(t, "nexo_connections_accepted_total", "ws"), srv.Metric(t, "nexo_connections_rejected_total", "ws"); a != 0 || r != 2 {
		t.Errorf("accepted %v, rejected %v; want 0 and 2", a, r)
	}
}

// TestNonBearerAuthorization: an Authorization header that is not a
// bearer token is a wrong token, not a missing one: refused where any
// token is configured (it passed as no token, with only an admin token).
func TestNonBearerAuthorization(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.AdminToken = "s3cret"
	srv := nexotest.Start(t, cfg)
	body := `{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"", 200},
		{"Bearer s3cret", 200},
		{"Basic dXNlcjpwYXNz", 401},
		{"Bearer ", 401},
	} {
		hdr := map[string]string{"Content-Type": "application/json"}
		if tt.auth != "" {
			hdr["Authorization"] = tt.auth
		}
		if got := do(t, "POST", "http://"+srv.Web+"/rpc", body, hdr); got != tt.want {
			t.Errorf("Authorization %q: %d, want %d", tt.auth, got, tt.want)
		}
	}
}

// TestWebSocketProtocolErrors: the WebSocket door closes with the status
// RFC 6455 gives each fault (it answered invalid UTF-8, closed an unmasked
// frame without a status, and waited forever for a dripped message), and
// counts the close as a bad frame.
func TestWebSocketProtocolErrors(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond // also a message's time to arrive whole
	srv := nexotest.Start(t, cfg)
	call := []byte(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`)
	for _, tt := range []struct {
		name  string
		send  [][]byte
		pause time.Duration // between the frames
		want  int
	}{
		{"invalid UTF-8", [][]byte{nexotest.WSFrame(0x1, true, []byte("[\"\xff\xfe\"]"))}, 0, 1007},
		{"unmasked frame", [][]byte{append([]byte{0x81, byte(len(call))}, call...)}, 0, 1002},
		{"binary message", [][]byte{nexotest.WSFrame(0x2, true, call)}, 0, 1003},
		{"dripped message", [][]byte{nexotest.WSFrame(0x1, false, call[:10]), nexotest.WSFrame(0x0, false, call[10:20]),
			nexotest.WSFrame(0x0, true, call[20:])}, 500 * time.Millisecond, 1008},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, br := nexotest.DialWS(t, srv.Web, "")
			start := time.Now()
			for i, f := range tt.send {
				if i > 0 {
					time.Sleep(tt.pause)
				}
				if _, err := c.Write(f); err != nil {
					break // closed already: what the close frame says is checked below
				}
			}
			if got := nexotest.WSCloseStatus(t, br); got != tt.want {
				t.Errorf("close status %d, want %d", got, tt.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("closed after %v", d)
			}
		})
	}
	nexotest.WaitFor(t, 3*time.Second, "the closes counted", func() bool {
		return srv.Stats().Closed["bad frame"] == 4
	})
}

// TestFavicon: the GUI has an icon, and /favicon.ico (which browsers and
// tools ask for by themselves) leads to it instead of a 404.
func TestFavicon(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	resp, err := http.Get("http://" + srv.Web + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("/favicon.ico: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
