package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	jsonschema "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/internal/sys"
	"github.com/nexo-project/nexo/internal/vectors"
	"github.com/nexo-project/nexo/internal/web"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// wsClient is a raw JSON-RPC-over-WebSocket peer: it sees every message.
type wsClient struct {
	t  *testing.T
	c  *websocket.Conn
	id int
}

func dialWS(t *testing.T, srv *nexotest.Server, query string, hdr http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+srv.Web+"/ws"+query, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}, resp, nil
}

// message is any JSON-RPC message the server sends.
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Name string `json:"name"`
		} `json:"data"`
	} `json:"error"`
}

func (w *wsClient) read() (message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := w.c.Read(ctx)
	if err != nil {
		return message{}, err
	}
	if typ != websocket.MessageText {
		w.t.Fatalf("got a %v message", typ)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		w.t.Fatalf("not JSON-RPC: %s", b)
	}
	return m, nil
}

// next reads until a message that is not a stats or clients event.
func (w *wsClient) next() message {
	w.t.Helper()
	for {
		m, err := w.read()
		if err != nil {
			w.t.Fatal(err)
		}
		if m.Method != "event.stats" && m.Method != "event.clients" {
			return m
		}
	}
}

func (w *wsClient) send(msg string) {
	w.t.Helper()
	if err := w.c.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
		w.t.Fatal(err)
	}
}

// call sends one call and returns its answer.
func (w *wsClient) call(method, params string) message {
	w.t.Helper()
	w.id++
	w.send(fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"params":%s,"id":%d}`, method, params, w.id))
	m := w.next()
	if string(m.ID) != fmt.Sprint(w.id) {
		w.t.Fatalf("answer to id %s, want %d", m.ID, w.id)
	}
	return m
}

func (w *wsClient) welcome() web.Welcome {
	w.t.Helper()
	m := w.next()
	var wel web.Welcome
	if m.Method != "event.welcome" || json.Unmarshal(m.Params, &wel) != nil {
		w.t.Fatalf("first message %+v, want event.welcome", m)
	}
	return wel
}

// TestWebSocketSession: a WebSocket client is welcomed with an id, listed
// with door ws and its name, calls methods (pipelined), and leaves the list
// with its reason when it closes.
func TestWebSocketSession(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	accepted := srv.Stats().Accepted
	w, _, err := dialWS(t, srv, "?name=browser-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	wel := w.welcome()
	// One TCP connection, counted once in the totals: on the web door's
	// listener, not again as a WebSocket session (it was, twice).
	if got := srv.Stats().Accepted - accepted; got != 1 {
		t.Errorf("a WebSocket client added %d to the accepted connections, want 1", got)
	}
	if wel.ClientID == 0 || !wel.Admin || wel.HeartbeatMS != 5000 {
		t.Errorf("welcome %+v: want an id, admin (loopback, no token), heartbeat 5000", wel)
	}
	info, ok := srv.Client(wel.ClientID)
	if !ok || info.Door != web.DoorWS || info.Name != "browser-1" || !strings.HasPrefix(info.Remote, "127.0.0.1:") {
		t.Fatalf("client list row %+v, %v", info, ok)
	}

	tests := []struct {
		method, params, result string
		code                   int
		name                   string
	}{
		{"math.div", "[7,2]", "3.5", 0, ""},
		{"math.add", "[9007199254740991,-1]", "9007199254740990", 0, ""},
		{"math.div", "[1,0]", "", -32006, "DIVISION_BY_ZERO"},
		{"math.mul", "[9007199254740991,9007199254740991]", "", -32007, "OVERFLOW"},
		{"math.add", "[9007199254740993,1]", "9007199254740994", 0, ""}, // beyond 2^53: exact, never rounded
		{"math.add", "[9223372036854775807,1]", "", -32007, "OVERFLOW"},
		{"math.add", "[9223372036854775808,1]", "", -32602, "BAD_PAYLOAD"}, // beyond int64: refused
		{"math.add", "[1.5,1]", "", -32602, "BAD_PAYLOAD"},
		{"no.such", "[]", "", -32601, "UNKNOWN_METHOD"},
	}
	for _, tt := range tests {
		m := w.call(tt.method, tt.params)
		switch {
		case tt.code == 0 && (m.Error != nil || string(m.Result) != tt.result):
			t.Errorf("%s %s: %+v %s, want %s", tt.method, tt.params, m.Error, m.Result, tt.result)
		case tt.code != 0 && (m.Error == nil || m.Error.Code != tt.code || m.Error.Data.Name != tt.name):
			t.Errorf("%s %s: %+v, want error %d %s", tt.method, tt.params, m.Error, tt.code, tt.name)
		}
	}

	// Pipelined: 200 calls sent before reading; every one answered once.
	for i := range 200 {
		w.send(fmt.Sprintf(`{"jsonrpc":"2.0","method":"math.add","params":[%d,1],"id":%d}`, i, 1000+i))
	}
	w.send(`{"jsonrpc":"2.0","method":"math.add","params":[1,1]}`) // a notification: no answer
	seen := map[string]string{}
	for range 200 {
		m := w.next()
		seen[string(m.ID)] = string(m.Result)
	}
	for i := range 200 {
		if got := seen[fmt.Sprint(1000+i)]; got != fmt.Sprint(i+1) {
			t.Fatalf("pipelined call %d: %q", i, got)
		}
	}
	nexotest.WaitFor(t, 2*time.Second, "the request count", func() bool {
		info, _ := srv.Client(wel.ClientID)
		return info.Requests == uint64(len(tests)+201) && info.Errors == 6
	})

	w.c.Close(websocket.StatusNormalClosure, "bye")
	nexotest.WaitFor(t, 2*time.Second, "the client to leave the list", func() bool {
		_, ok := srv.Client(wel.ClientID)
		return !ok
	})
	closed := srv.Clients().Closed
	if len(closed) == 0 || closed[0].ID != wel.ClientID || closed[0].Reason != "client closed" {
		t.Errorf("closed ring %+v", closed)
	}
}

// TestWebSocketEvents: a subscriber gets the client list at once, sees a
// native client come and go, and gets stats every second.
func TestWebSocketEvents(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	w.send(`{"jsonrpc":"2.0","method":"sys.subscribe","params":["clients","stats"],"id":1}`)
	var list status.ClientsEvent
	gotAnswer, gotStats := false, false
	waitClients := func(what string, cond func(status.ClientsEvent) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			m, err := w.read()
			if err != nil {
				t.Fatal(err)
			}
			switch m.Method {
			case "event.clients":
				if err := json.Unmarshal(m.Params, &list); err != nil {
					t.Fatal(err)
				}
				if cond(list) {
					return
				}
			case "event.stats":
				var s status.Sample
				if err := json.Unmarshal(m.Params, &s); err != nil || s.Clients < 1 {
					t.Errorf("stats event %s", m.Params)
				}
				gotStats = true
			case "":
				if string(m.Result) != `["clients","stats"]` {
					t.Errorf("subscribe answered %s %+v", m.Result, m.Error)
				}
				gotAnswer = true
			}
		}
		t.Fatalf("no clients event with %s; last %+v", what, list)
	}
	waitClients("this client", func(ev status.ClientsEvent) bool { return ev.Total == 1 && ev.Doors["ws"] == 1 })
	nc, welcome := nexotest.Hello(t, srv.Native, "native-watched")
	waitClients("the native client", func(ev status.ClientsEvent) bool {
		for _, c := range ev.Clients {
			if c.ID == welcome.ClientID && c.Name == "native-watched" && c.Door == "native" {
				return true
			}
		}
		return false
	})
	nc.Close()
	waitClients("the native client closed", func(ev status.ClientsEvent) bool {
		return ev.Total == 1 && len(ev.Closed) > 0 && ev.Closed[0].ID == welcome.ClientID && ev.Closed[0].Reason == "client closed"
	})
	waitClients("a stats event", func(status.ClientsEvent) bool { return gotStats })
	if !gotAnswer {
		t.Error("sys.subscribe was not answered")
	}

	if m := w.call("sys.subscribe", `["nope"]`); m.Error == nil || m.Error.Code != -32602 {
		t.Errorf("unknown topic: %+v", m.Error)
	}
}

// TestWebSocketKick: a kicked WebSocket client gets event.goodbye with the
// reason, then a close frame, and is recorded as kicked.
func TestWebSocketKick(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := w.welcome().ClientID
	if !srv.Kick(id, "test over") {
		t.Fatal("Kick: not connected")
	}
	m := w.next()
	if m.Method != "event.goodbye" || !strings.Contains(string(m.Params), "kicked: test over") {
		t.Fatalf("got %+v, want event.goodbye", m)
	}
	_, err = w.read()
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after goodbye: %v, want a going-away close", err)
	}
	nexotest.WaitFor(t, 2*time.Second, "the kicked client in the closed ring", func() bool {
		c := srv.Clients().Closed
		return len(c) > 0 && c[0].ID == id && c[0].Reason == "kicked"
	})
}

// TestWebSocketOrigin: a page of another site cannot open a WebSocket;
// the page's own origin (scheme, host and port) and allowed patterns can.
func TestWebSocketOrigin(t *testing.T) {
	srv := nexotest.StartWith(t, nexotest.FastConfig(), nexotest.Options{OriginPatterns: []string{"trusted.example", "https://app.example.com"}})
	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"", true}, // not a browser
		{"http://" + srv.Web, true},
		{"https://trusted.example", true},
		{"https://evil.example", false},
		{"http://127.0.0.1:1", false}, // another port is another origin
		{"https://" + srv.Web, false}, // a plain-http door: another scheme is another origin
		{"https://app.example.com", true},
		{"http://app.example.com", false}, // an allowed origin's scheme counts
	} {
		hdr := http.Header{}
		if tt.origin != "" {
			hdr.Set("Origin", tt.origin)
		}
		w, resp, err := dialWS(t, srv, "", hdr)
		if tt.ok != (err == nil) {
			t.Errorf("origin %q: %v, want ok=%v", tt.origin, err, tt.ok)
			continue
		}
		if !tt.ok && (resp == nil || resp.StatusCode != http.StatusForbidden) {
			t.Errorf("origin %q: response %v, want 403", tt.origin, resp)
		}
		if w != nil {
			w.welcome()
			w.c.Close(websocket.StatusNormalClosure, "")
		}
	}
}

// TestWebSocketToken: with an admin token configured, a client without it
// is not an admin (no kicks, no addresses), a wrong one is refused with
// 401, and the right one makes an admin.
func TestWebSocketToken(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.AdminToken = "s3cret"
	srv := nexotest.Start(t, cfg)
	_, victim := nexotest.Hello(t, srv.Native, "victim")

	if _, resp, err := dialWS(t, srv, "?token=wrong", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %v %v, want 401", err, resp)
	}

	plain, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if plain.welcome().Admin {
		t.Error("a client without the token is admin")
	}
	if m := plain.call("sys.kick", fmt.Sprintf("[%d]", victim.ClientID)); m.Error == nil || m.Error.Code != -32601 {
		t.Errorf("kick without the token: %+v %s", m.Error, m.Result)
	}
	plain.send(`{"jsonrpc":"2.0","method":"sys.subscribe","params":["clients"],"id":99}`)
	for {
		m := plain.next()
		if m.Method == "" {
			break
		}
	}
	m, err := plain.read()
	for err == nil && m.Method != "event.clients" {
		m, err = plain.read()
	}
	if err != nil || strings.Contains(string(m.Params), "127.0.0.1") {
		t.Errorf("clients event for a non-admin: %v %s; want no addresses", err, m.Params)
	}

	admin, _, err := dialWS(t, srv, "", http.Header{"Authorization": {"Bearer s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if !admin.welcome().Admin {
		t.Error("the right token does not make an admin")
	}
	if m := admin.call("sys.kick", fmt.Sprintf(`[%d, "enough"]`, victim.ClientID)); m.Error != nil || string(m.Result) != "true" {
		t.Errorf("admin kick: %+v %s", m.Error, m.Result)
	}
	nexotest.WaitFor(t, 2*time.Second, "the victim to leave", func() bool {
		_, ok := srv.Client(victim.ClientID)
		return !ok
	})
}

// TestWebSocketHeartbeat: a client that stops answering pings is closed
// within the heartbeat bound.
func TestWebSocketHeartbeat(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.Heartbeat = 100 * time.Millisecond
	srv := nexotest.Start(t, cfg)
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := w.welcome().ClientID
	// Not reading means not answering pings (the library answers them from
	// Read). The server must give up within 2 intervals plus a grace.
	start := time.Now()
	nexotest.WaitFor(t, 2*time.Second, "the silent client to be closed", func() bool {
		_, ok := srv.Client(id)
		return !ok
	})
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("closed after %v, want within 2.5 heartbeats (250ms) plus scheduling", d)
	}
	if c := srv.Clients().Closed; len(c) == 0 || c[0].Reason != "heartbeat timeout" {
		t.Errorf("closed ring %+v", c)
	}
}

// TestWebSocketInFlightBytes: the messages one WebSocket has running may
// hold at most MaxInFlightBytes; past it a message is answered BUSY (each
// used to be copied and run, up to MaxInFlight of them at once).
func TestWebSocketInFlightBytes(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.MaxInFlightBytes = 100 << 10
	srv := nexotest.Start(t, cfg)
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	pad := strings.Repeat(" ", 60<<10) // JSON allows the whitespace; the bytes count
	for i := 1; i <= 2; i++ {
		w.send(fmt.Sprintf(`{"jsonrpc":"2.0","method":"test.sleep","params":[300],"id":%d}%s`, i, pad))
	}
	m := w.next()
	if string(m.ID) != "2" || m.Error == nil || m.Error.Data.Name != "BUSY" || m.Error.Message != "too many bytes in flight on this connection" {
		t.Fatalf("a second 60 KB message over 100 KB: %+v", m)
	}
	if m := w.next(); string(m.ID) != "1" || string(m.Result) != `"slept"` {
		t.Fatalf("the first: %+v", m)
	}
}

// TestWebSocketRefusals: calls over MaxInFlight get BUSY, calls after a
// GOODBYE get SHUTTING_DOWN while the ones in flight finish, and a binary
// message closes the session.
func TestWebSocketRefusals(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.MaxInFlight = 2
	srv := nexotest.Start(t, cfg)
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := w.welcome().ClientID
	for i := 1; i <= 3; i++ {
		w.send(fmt.Sprintf(`{"jsonrpc":"2.0","method":"test.sleep","params":[300],"id":%d}`, i))
	}
	m := w.next()
	if string(m.ID) != "3" || m.Error == nil || m.Error.Data.Name != "BUSY" || m.Error.Code != -32008 {
		t.Fatalf("third call over a bound of 2: %+v", m)
	}
	srv.Kick(id, "refusals")
	if m := w.next(); m.Method != "event.goodbye" {
		t.Fatalf("got %+v, want event.goodbye", m)
	}
	w.send(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":4}`)
	got := map[string]string{}
	for range 3 {
		m := w.next()
		if m.Error != nil {
			got[string(m.ID)] = m.Error.Data.Name
		} else {
			got[string(m.ID)] = string(m.Result)
		}
	}
	if got["1"] != `"slept"` || got["2"] != `"slept"` || got["4"] != "SHUTTING_DOWN" {
		t.Errorf("answers during the drain: %v", got)
	}
	if _, err := w.read(); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("after the drain: %v, want a going-away close", err)
	}

	w2, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w2.welcome()
	if err := w2.c.Write(context.Background(), websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.read(); websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Errorf("binary message: %v, want close 1003", err)
	}
}

// TestGUI: the GUI and the JavaScript client are served from the binary,
// with a policy that loads nothing from elsewhere.
func TestGUI(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	for _, tt := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script type="module" src="app.js">`},
		{"/app.js", "text/javascript", `from "/nexo.js"`},
		{"/style.css", "text/css", "--accent"},
		{"/nexo.js", "text/javascript", "export function connect"},
	} {
		resp, err := http.Get("http://" + srv.Web + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.ctype) ||
			!strings.Contains(string(body), tt.contains) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: %d %q CSP %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
		}
		if h := resp.Header; h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v, want no framing, nosniff, no referrer", tt.path, h)
		}
	}
	// A JSON-RPC answer is never rendered: its type, and nosniff so that
	// it is taken for nothing else.
	post, err := http.Post("http://"+srv.Web+"/rpc", "application/json", strings.NewReader(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(post.Body)
	post.Body.Close()
	if string(body) != `{"jsonrpc":"2.0","result":3,"id":1}`+"\n" || post.Header.Get("Content-Type") != "application/json" || post.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("POST /rpc: %s %v", body, post.Header)
	}
	resp, err := http.Get("http://" + srv.Web + "/rpc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /rpc: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestClientTokens: with client tokens configured, /ws and POST /rpc need
// one (Bearer, or ?token= on /ws); a missing or wrong one is 401 and
// counted; an address over its failure limit has a token checked once a
// second, and gets 429 meanwhile.
func TestClientTokens(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.Tokens = []string{"alpha"}
	cfg.AuthFailures = 4
	srv := nexotest.Start(t, cfg)
	post := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Web+"/rpc", strings.NewReader(`{"jsonrpc":"2.0","method":"math.add","params":[2,3],"id":1}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("alpha"); code != http.StatusOK {
		t.Errorf("POST /rpc with a client token: %d", code)
	}
	c, _, err := dialWS(t, srv, "?token=alpha", nil)
	if err != nil {
		t.Fatalf("ws with ?token=alpha: %v", err)
	}
	c.welcome()
	if m := c.call("math.add", "[2,3]"); string(m.Result) != "5" {
		t.Errorf("ws call: %+v", m)
	}
	if code := post(""); code != http.StatusUnauthorized {
		t.Errorf("POST /rpc without a token: %d", code)
	}
	if code := post("wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST /rpc with a wrong token: %d", code)
	}
	for _, q := range []string{"", "?token=wrong"} {
		if _, resp, err := dialWS(t, srv, q, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("ws %q: %v %v, want 401", q, err, resp)
		}
	}
	// Four failures: this address is over its limit. Its tokens are
	// checked once a second: a good one gets in, and another attempt right
	// after it is refused without a look, with 429.
	if code := post("alpha"); code != http.StatusOK {
		t.Errorf("POST /rpc with a good token, over the limit: %d", code)
	}
	if _, resp, err := dialWS(t, srv, "?token=alpha", nil); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("ws within the second: %v %v, want 429", err, resp)
	}
	if code := post("alpha"); code != http.StatusTooManyRequests {
		t.Errorf("POST /rpc within the second: %d", code)
	}
}

// TestWebSocketInlineNotHeldBack: a cheap call answered on the reader
// does not wait behind a slow one in flight on the same socket.
func TestWebSocketInlineNotHeldBack(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	w.send(`{"jsonrpc":"2.0","method":"test.sleep","params":[500],"id":1}`)
	w.send(`{"jsonrpc":"2.0","method":"math.add","params":[40,2],"id":2}`)
	if m := w.next(); string(m.ID) != "2" || string(m.Result) != "42" {
		t.Fatalf("first answer %+v, want math.add's 42 before the sleep ends", m)
	}
	if m := w.next(); string(m.ID) != "1" || string(m.Result) != `"slept"` {
		t.Fatalf("second answer %+v, want the sleep", m)
	}
}

// TestWebSocketSlowConsumer: a WebSocket client that sends and never reads
// is closed once a write to it stalls for the write timeout, and another
// client is served all along.
func TestWebSocketSlowConsumer(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.WriteTimeout = 300 * time.Millisecond
	cfg.MaxPending = 256 << 20 // the stalled write, not the backlog, must end it
	srv := nexotest.Start(t, cfg)
	w, _, err := dialWS(t, srv, "?name=stuck", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	other, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	other.welcome()
	big := `{"jsonrpc":"2.0","method":"sys.echo","params":["` + strings.Repeat("x", 60000) + `"],"id":1}`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; ; i++ {
		if srv.ClosedWith("stuck", "slow consumer") {
			break
		}
		if i < 2000 { // about 120 MB of answers: far past what the sockets buffer
			if err := w.c.Write(ctx, websocket.MessageText, []byte(big)); err != nil {
				break // the server closed the connection
			}
		} else {
			time.Sleep(10 * time.Millisecond)
		}
		if ctx.Err() != nil {
			t.Fatal("the client that does not read was not closed as a slow consumer")
		}
	}
	nexotest.WaitFor(t, 5*time.Second, "slow consumer closed", func() bool { return srv.ClosedWith("stuck", "slow consumer") })
	if m := other.call("math.add", "[40,2]"); string(m.Result) != "42" {
		t.Errorf("the other client got %+v", m)
	}
}

// TestMethodVectorsJSON: every math vector of testdata/vectors, int64 edges
// included, answered on /rpc and /ws as on the native door: the same
// integer exactly, the same float64, or the same error. Integers beyond
// 2^53 were refused (or, as results, rounded by clients) before.
func TestMethodVectorsJSON(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	nexotest.CheckJSONVectors(t, "ws", func(method, params string) (json.RawMessage, string) {
		return w.call(method, params).answer()
	})
	nexotest.CheckJSONVectors(t, "http", func(method, params string) (json.RawMessage, string) {
		return postRPC(t, srv, method, params).answer()
	})
}

// answer is a message's result, or its error's name.
func (m message) answer() (json.RawMessage, string) {
	if m.Error != nil {
		return nil, m.Error.Data.Name
	}
	return m.Result, ""
}

// postRPC calls a method over POST /rpc.
func postRPC(t *testing.T, srv *nexotest.Server, method, params string) message {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"params":%s,"id":1}`, method, params)
	resp, err := http.Post("http://"+srv.Web+"/rpc", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m message
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// greetParams and greeting are the types of test.greet, a typed JSON
// method.
type greetParams struct {
	Name string `json:"name" jsonschema:"minLength=1,maxLength=64"`
}

type greeting struct {
	Greeting string `json:"greeting"`
}

// TestJSONMethodEveryDoor: a method written as a typed Go function is
// called with the same JSON on the native door, /rpc and /ws, params that
// do not fit are BAD_PAYLOAD (-32602) naming the field on each, and
// sys.describe on the native door describes it and math.add.
func TestJSONMethodEveryDoor(t *testing.T) {
	greet := service.JSON("test.greet", func(_ context.Context, _ *service.Caller, p greetParams) (greeting, error) {
		return greeting{"Hello, " + p.Name + "!"}, nil
	})
	srv := nexotest.StartWith(t, nexotest.FastConfig(), nexotest.Options{Catalog: func(*server.Server) (catalog.Options, error) {
		return catalog.Options{Extra: []service.Method{greet}}, nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	native, err := client.Dial(ctx, srv.Native, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer native.Close()
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()

	const want = `{"greeting":"Hello, Ann!"}`
	if got, err := native.Call(ctx, "test.greet", []byte(`{"name":"Ann"}`)); err != nil || string(got) != want {
		t.Errorf("native: %s %v", got, err)
	}
	for door, m := range map[string]message{"ws": w.call("test.greet", `{"name":"Ann"}`), "http": postRPC(t, srv, "test.greet", `{"name":"Ann"}`)} {
		if m.Error != nil || string(m.Result) != want {
			t.Errorf("%s: %+v %s", door, m.Error, m.Result)
		}
	}
	bad := `{"name":""}`
	if _, err := native.Call(ctx, "test.greet", []byte(bad)); !errors.Is(err, wire.CodeBadPayload) || !strings.Contains(err.Error(), "/name") {
		t.Errorf("native, bad params: %v", err)
	}
	for door, m := range map[string]message{"ws": w.call("test.greet", bad), "http": postRPC(t, srv, "test.greet", bad)} {
		if m.Error == nil || m.Error.Code != -32602 || !strings.Contains(m.Error.Message, "/name") {
			t.Errorf("%s, bad params: %+v", door, m.Error)
		}
	}

	out, err := native.Call(ctx, "sys.describe", nil)
	if err != nil {
		t.Fatal(err)
	}
	var cat sys.Catalog
	if err := json.Unmarshal(out, &cat); err != nil {
		t.Fatal(err)
	}
	found := map[string]service.Described{}
	for _, d := range cat.Methods {
		found[d.Name] = d
	}
	if d := found["test.greet"]; d.Encoding != "json" || !strings.Contains(string(d.Params), `"maxLength":64`) {
		t.Errorf("test.greet described as %+v", d)
	}
	if d := found["math.add"]; d.Encoding != "binary" || !d.Idempotent || len(d.Examples) == 0 || !slices.Contains(d.Errors, "OVERFLOW") {
		t.Errorf("math.add described as %+v", d)
	}
	out, err = native.Call(ctx, "sys.describe", []byte(`["math.div"]`))
	var one service.Described
	if err != nil || json.Unmarshal(out, &one) != nil || one.Name != "math.div" {
		t.Errorf("sys.describe [math.div]: %s %v", out, err)
	}
	if _, err := native.Call(ctx, "sys.describe", []byte(`["no.such"]`)); !errors.Is(err, wire.CodeUnknownMethod) {
		t.Errorf("sys.describe of an unknown method: %v", err)
	}
}

// TestTooLargeCloses: a POST /rpc over 1 MiB gets 413 and a connection
// that says it closes; the counting wrapper of the HTTP doors hid the
// body reader's own close, and the connection stayed open unsaid.
func TestTooLargeCloses(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	body := `[` + strings.Repeat(`1,`, 600<<10) + `1]`
	req, err := http.NewRequest("POST", "http://"+srv.Web+"/rpc", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req) // keep-alive
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("%s, Close %v: want 413 and the connection closed", resp.Status, resp.Close)
	}
}

// TestDiscover: rpc.discover on /rpc and /ws answers an OpenRPC document
// that the OpenRPC meta-schema (testdata/openrpc) accepts, with every
// method the JSON doors call: math.add's params by position, its errors
// and examples; a typed JSON method's params by name.
func TestDiscover(t *testing.T) {
	greet := service.JSON("test.greet", func(_ context.Context, _ *service.Caller, p greetParams) (greeting, error) {
		return greeting{"Hello, " + p.Name + "!"}, nil
	})
	srv := nexotest.StartWith(t, nexotest.FastConfig(), nexotest.Options{Catalog: func(*server.Server) (catalog.Options, error) {
		return catalog.Options{Extra: []service.Method{greet}}, nil
	}})
	openrpc := openRPCSchema(t)
	w, _, err := dialWS(t, srv, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.welcome()
	for door, m := range map[string]message{"ws": w.call("rpc.discover", "[]"), "http": postRPC(t, srv, "rpc.discover", "[]")} {
		if m.Error != nil {
			t.Fatalf("%s: %+v", door, m.Error)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Result))
		if err != nil {
			t.Fatal(err)
		}
		if err := openrpc.Validate(v); err != nil {
			t.Errorf("%s: the document is not valid OpenRPC: %v", door, err)
		}
		var d struct {
			OpenRPC string
			Methods []struct {
				Name           string
				ParamStructure string
				Params         []struct{ Name string }
				Errors         []struct{ Code int }
				Examples       []json.RawMessage
			}
		}
		if err := json.Unmarshal(m.Result, &d); err != nil {
			t.Fatal(err)
		}
		byName := map[string]int{}
		for i, m := range d.Methods {
			byName[m.Name] = i
		}
		add, greet := d.Methods[byName["math.add"]], d.Methods[byName["test.greet"]]
		if d.OpenRPC != "1.3.2" || add.ParamStructure != "by-position" || len(add.Params) != 2 || add.Params[0].Name != "a" ||
			len(add.Examples) != 2 || !slices.ContainsFunc(add.Errors, func(e struct{ Code int }) bool { return e.Code == -32007 }) {
			t.Errorf("%s: math.add in the document: %+v", door, add)
		}
		if greet.ParamStructure != "by-name" || len(greet.Params) != 1 || greet.Params[0].Name != "name" {
			t.Errorf("%s: test.greet in the document: %+v", door, greet)
		}
	}
	if m := postRPC(t, srv, "rpc.discover", `["x"]`); m.Error == nil || m.Error.Code != -32602 {
		t.Errorf("rpc.discover with params: %+v", m.Error)
	}
}

// openRPCSchema compiles the OpenRPC meta-schema of testdata/openrpc. It
// and the JSON Schema meta-schema it refers to name a draft-07 dialect
// published at meta.json-schema.tools as their $schema: they are compiled
// as draft-07, and that address is served from testdata, offline.
func openRPCSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	dir := filepath.Join(vectors.Dir(), "..", "openrpc")
	load := func(name string) any {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(`"$schema": "https://meta.json-schema.tools/"`), []byte(`"$schema": "http://json-schema.org/draft-07/schema#"`))
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	tools := load("json-schema-tools-meta-schema.json")
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{"https": loaderFunc(func(url string) (any, error) {
		if strings.TrimSuffix(url, "/") == "https://meta.json-schema.tools" {
			return tools, nil
		}
		return nil, fmt.Errorf("offline: no %s", url)
	})})
	if err := c.AddResource("https://meta.open-rpc.org/", load("meta-schema.json")); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("https://meta.open-rpc.org/")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loaderFunc is a jsonschema.URLLoader of a function.
type loaderFunc func(url string) (any, error)

func (f loaderFunc) Load(url string) (any, error) { return f(url) }
