package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// The catalogue's faults, by family. Bounds: an answer that comes at once
// is given a second (the suite runs under -race beside other packages);
// one that waits for a timer is given the timer plus a second: the
// catalogue's server has an 800 ms heartbeat (a silent client is closed
// within 2½, 2 s), a 1 s handshake timeout (also the legacy door's
// partial packet and a WebSocket message's time to arrive whole), a 2 s
// legacy idle timeout and a 500 ms write timeout. HTTP's own timers are
// the ones nexo serve sets (5 s for headers).

const (
	quick    = time.Second                            // an answer that comes at once
	hbBound  = 2*time.Second + quick                  // 2½ heartbeats of 800 ms
	hsBound  = time.Second + quick                    // the handshake timeout
	hdrBound = 5*time.Second + quick                  // HTTP's header timeout
	wrBound  = 500*time.Millisecond + hbBound + quick // a write stalls, then is found
)

// catalogue returns every fault, in the order they run.
func catalogue() []fault {
	var all []fault
	for _, family := range [][]fault{framing(), protocolState(), exhaustion(), slowloris(), deadPeers(),
		legacyPackets(), arithmetic(), authTLS(), browser(), adminAPI()} {
		all = append(all, family...)
	}
	return all
}

// hello is a HELLO frame with a token.
func helloToken(name, token string) []byte {
	b, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: name, Token: token}) // strings marshal
	return b
}

// conn opens a native connection that has said HELLO.
func (e *env) conn(t *testing.T, name string) *Conn {
	t.Helper()
	c := Dial(t, e.Native)
	c.Hello(wire.Hello{Name: name, Token: e.token()})
	return c
}

// expectFatal reads frames until ERROR, checks its code, then the close.
func expectFatal(t *testing.T, c *Conn, code wire.Code) {
	t.Helper()
	c.ExpectError(0, code)
	c.ExpectClosed()
}

// nativeFatal sends input, after HELLO unless raw, and expects ERROR code
// and the close.
func nativeFatal(input []byte, raw bool, code wire.Code) func(*testing.T, *env) {
	return func(t *testing.T, e *env) {
		var c *Conn
		if raw {
			c = Dial(t, e.Native)
		} else {
			c = e.conn(t, "offender")
		}
		c.Send(input)
		expectFatal(t, c, code)
	}
}

// nativeAnswer sends frames after HELLO and expects, for the last one, an
// answer of id with code (0: a RESPONSE); the connection then still
// serves.
func nativeAnswer(code wire.Code, frames ...[]byte) func(*testing.T, *env) {
	return func(t *testing.T, e *env) {
		c := e.conn(t, "offender")
		for _, f := range frames {
			c.Send(f)
		}
		last, err := wire.NewReader(bytes.NewReader(frames[len(frames)-1]), 0).ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, c, last.ID, code)
		c.Send(wire.AppendRequest(nil, 99, "math.add", Operands(1, 2)))
		expectAnswer(t, c, 99, 0)
	}
}

// expectAnswer reads frames until the one of id, and checks its code.
func expectAnswer(t *testing.T, c *Conn, id uint32, code wire.Code) wire.Frame {
	t.Helper()
	for {
		f := c.Read()
		if f.ID != id || f.Type == wire.TypeEvent {
			continue
		}
		got := wire.Code(0)
		if f.Type == wire.TypeError {
			we, err := wire.ParseError(f.Body)
			if err != nil {
				t.Fatal(err)
			}
			got = we.Code
		} else if f.Type != wire.TypeResponse {
			t.Fatalf("got %s", String(f))
		}
		if got != code {
			t.Fatalf("request %d: got %s, want code %v", id, String(f), code)
		}
		return f
	}
}

func req(id uint32, method string, payload []byte) []byte {
	return wire.AppendRequest(nil, id, method, payload)
}

func framing() []fault {
	f := func(name string, input []byte, raw bool, code wire.Code, counted string) fault {
		return fault{family: "framing", name: name, bound: quick, counted: counted, attack: nativeFatal(input, raw, code)}
	}
	bigHello := wire.AppendFrame(nil, wire.TypeHello, 0, 0, append(append([]byte(`{"name":"`), bytes.Repeat([]byte("x"), 5000)...), `"}`...))
	garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 256)
	longMethod := wire.AppendFrame(nil, wire.TypeRequest, 0, 1, append([]byte{200}, "math.add"...))
	tlsHello := []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03}
	return []fault{
		f("request before HELLO", req(1, "math.add", Operands(1, 2)), true, wire.CodeBadFrame, "handshake/bad frame"),
		f("HTTP request to the native door", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), true, wire.CodeFrameTooLarge, "handshake/frame too large"),
		f("TLS ClientHello to the plain native door", tlsHello, true, wire.CodeFrameTooLarge, "handshake/frame too large"),
		f("garbage before HELLO", garbage, true, wire.CodeFrameTooLarge, "handshake/frame too large"),
		f("HELLO over 4 KiB", bigHello, true, wire.CodeFrameTooLarge, "handshake/frame too large"),
		f("HELLO that is not JSON", wire.AppendFrame(nil, wire.TypeHello, 0, 0, []byte("{not json")), true, wire.CodeBadFrame, "handshake/bad frame"),
		f("wrong protocol version", []byte{0, 0, 0, 8, 9, byte(wire.TypePing), 0, 0, 0, 0, 0, 0}, false, wire.CodeUnsupportedVersion, "closed/unsupported version"),
		f("length claims 4 GiB", []byte{0xff, 0xff, 0xff, 0xff, 1, 3}, false, wire.CodeFrameTooLarge, "closed/frame too large"),
		f("length over --max-frame", []byte{0, 0x10, 0, 1, 1, 3}, false, wire.CodeFrameTooLarge, "closed/frame too large"),
		f("length below the header", []byte{0, 0, 0, 3, 1, 6, 0}, false, wire.CodeBadFrame, "closed/bad frame"),
		f("unknown frame type", []byte{0, 0, 0, 8, 1, 42, 0, 0, 0, 0, 0, 0}, false, wire.CodeBadFrame, "closed/bad frame"),
		f("unknown flag", []byte{0, 0, 0, 8, 1, byte(wire.TypePing), 0x80, 0, 0, 0, 0, 0}, false, wire.CodeBadFrame, "closed/bad frame"),
		f("deadline flag on a PING", []byte{0, 0, 0, 8, 1, byte(wire.TypePing), 0, 1, 0, 0, 0, 0}, false, wire.CodeBadFrame, "closed/bad frame"),
		f("request with an empty method", wire.AppendFrame(nil, wire.TypeRequest, 0, 5, []byte{0}), false, wire.CodeBadFrame, "closed/bad frame"),
		f("method length past the frame", longMethod, false, wire.CodeBadFrame, "closed/bad frame"),
		f("deadline flag without a deadline", wire.AppendFrame(nil, wire.TypeRequest, wire.FlagDeadline, 1, []byte{0, 0}), false, wire.CodeBadFrame, "closed/bad frame"),
		f("PING body over 64 bytes", wire.AppendFrame(nil, wire.TypePing, 0, 0, make([]byte, 65)), false, wire.CodeBadFrame, "closed/bad frame"),
		f("RESPONSE from a client", wire.AppendResponse(nil, 1, nil), false, wire.CodeBadFrame, "closed/bad frame"),
		f("EVENT from a client", wire.AppendEvent(nil, "t", nil), false, wire.CodeBadFrame, "closed/bad frame"),
		f("WELCOME from a client", wire.AppendFrame(nil, wire.TypeWelcome, 0, 0, []byte("{}")), false, wire.CodeBadFrame, "closed/bad frame"),
		f("ERROR from a client", wire.AppendError(nil, 0, wire.CodeInternal, "x"), false, wire.CodeBadFrame, "closed/bad frame"),
		{family: "framing", name: "frame cut short by a half-close", bound: quick, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "offender")
			c.Send(req(1, "math.add", Operands(1, 2))[:20])
			_ = c.Conn.(*net.TCPConn).CloseWrite()
			expectFatal(t, c, wire.CodeBadFrame)
		}},
	}
}

func protocolState() []fault {
	f := func(name string, code wire.Code, counted string, frames ...[]byte) fault {
		return fault{family: "protocol state", name: name, bound: quick, counted: counted, attack: nativeAnswer(code, frames...)}
	}
	long := strings.Repeat("m", 255)
	return []fault{
		{family: "protocol state", name: "second HELLO", bound: quick, counted: "closed/bad frame",
			attack: nativeFatal(wire.AppendFrame(nil, wire.TypeHello, 0, 0, []byte("{}")), false, wire.CodeBadFrame)},
		f("unknown method", wire.CodeUnknownMethod, "code/unknown/UNKNOWN_METHOD", req(1, "no.such", nil)),
		f("unknown method of 255 bytes", wire.CodeUnknownMethod, "code/unknown/UNKNOWN_METHOD", req(1, long, nil)),
		f("payload the method does not take", wire.CodeBadPayload, "code/math.add/BAD_PAYLOAD", req(1, "math.add", []byte{1, 2, 3})),
		f("a handler that panics", wire.CodeInternal, "code/test.panic/INTERNAL", req(1, "test.panic", nil)),
		f("deadline already passed", wire.CodeTimeout, "code/test.sleep/TIMEOUT", wire.AppendRequestDeadline(nil, 1, 0, "test.sleep", Ms(2000))),
		{family: "protocol state", name: "same id twice in flight", bound: quick, counted: "code/test.sleep/OK", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "offender")
			c.Send(append(req(7, "test.sleep", Ms(50)), req(7, "test.sleep", Ms(50))...))
			// Both are answered: ids are the client's to choose, and the
			// server never drops a request it read.
			expectAnswer(t, c, 7, 0)
			expectAnswer(t, c, 7, 0)
		}},
		{family: "protocol state", name: "PONG nobody asked for", bound: quick, counted: "code/sys.echo/OK",
			attack: nativeAnswer(0, wire.AppendFrame(nil, wire.TypePong, 0, 77, []byte("?")), req(1, "sys.echo", []byte("still here")))},
		{family: "protocol state", name: "requests after GOODBYE", bound: quick, counted: "closed/client goodbye", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "offender")
			c.Send(append(req(1, "math.add", Operands(1, 2)), wire.AppendGoodbye(nil, "bye")...))
			c.Send(req(2, "math.add", Operands(1, 2)))
			expectAnswer(t, c, 1, 0)
			// Request 2 is refused SHUTTING_DOWN if the server reads it
			// before it closes, and never read otherwise.
			for {
				f, err := c.ReadErr()
				if err != nil {
					return // closed
				}
				if we, _ := wire.ParseError(f.Body); f.Type != wire.TypeError || f.ID != 2 || we.Code != wire.CodeShuttingDown {
					t.Fatalf("after GOODBYE: %s", String(f))
				}
			}
		}},
		{family: "protocol state", name: "10,000 requests in one write", bound: 5 * quick, counted: "code/math.mul/OK", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "offender")
			var all []byte
			for i := range uint32(10000) {
				all = wire.AppendRequest(all, i+1, "math.mul", Operands(int64(i), 3))
			}
			go func() { _, _ = c.Write(all) }()
			for i := range uint32(10000) {
				f := expectAnswer(t, c, i+1, 0)
				if got := int64(binary.BigEndian.Uint64(f.Body)); got != int64(i)*3 {
					t.Fatalf("answer %d: %d", i+1, got)
				}
			}
		}},
		{family: "protocol state", name: "past --max-inflight", bound: 2 * quick, counted: "code/test.sleep/BUSY", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "offender")
			var all []byte
			for i := range uint32(80) { // the limit is 64
				all = wire.AppendRequest(all, i+1, "test.sleep", Ms(300))
			}
			c.Send(all)
			busy := 0
			for range 80 {
				f := c.Read()
				if f.Type == wire.TypeError {
					if we, _ := wire.ParseError(f.Body); we.Code == wire.CodeBusy {
						busy++
					}
				}
			}
			if busy != 16 {
				t.Errorf("%d BUSY, want 16", busy)
			}
		}},
		{family: "protocol state", name: "past --max-inflight-total", bound: 3 * quick, counted: "code/test.sleep/BUSY", attack: func(t *testing.T, e *env) {
			// 5 connections × 60 requests against a total of 256.
			var wg sync.WaitGroup
			var mu sync.Mutex
			busy := 0
			for k := range 5 {
				c := e.conn(t, fmt.Sprint("offender-", k))
				var all []byte
				for i := range uint32(60) {
					all = wire.AppendRequest(all, i+1, "test.sleep", Ms(1500)) // held until all five have sent theirs
				}
				c.Send(all)
				wg.Go(func() {
					for range 60 {
						f, err := c.ReadErr()
						if err != nil {
							return
						}
						if we, _ := wire.ParseError(f.Body); f.Type == wire.TypeError && we.Code == wire.CodeBusy {
							mu.Lock()
							busy++
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			if busy != 300-256 {
				t.Errorf("%d BUSY, want %d", busy, 300-256)
			}
		}},
		{family: "protocol state", name: "past --max-inflight-bytes", bound: 2 * quick, counted: "code/test.sleep/BUSY", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "offender")
			pad := make([]byte, 600<<10) // 600 KiB each: the 7th passes 4 MiB
			var all []byte
			for i := range uint32(8) {
				all = wire.AppendRequest(all, i+1, "test.sleep", append(Ms(300), pad...))
			}
			go func() { _, _ = c.Write(all) }()
			busy := 0
			for range 8 {
				f := c.Read()
				if we, _ := wire.ParseError(f.Body); f.Type == wire.TypeError && we.Code == wire.CodeBusy && we.Msg == "too many bytes in flight on this connection" {
					busy++
				}
			}
			if busy == 0 {
				t.Error("no request was refused BUSY for its bytes in flight")
			}
		}},
	}
}

// dialMany opens n TCP connections to addr from a loopback address of its
// own, so that the per-address limit is reached without touching the
// canary's; they close when the test ends.
func dialMany(t *testing.T, from, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	out := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// readAllWithin reads what c sends until it closes, within d.
func readAllWithin(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("not closed within %v; got %q", d, b)
	}
	return string(b)
}

func exhaustion() []fault {
	perIP := func(door, from string, addr func(*env) string, hold func(t *testing.T, c net.Conn), check func(t *testing.T, got string)) fault {
		return fault{family: "exhaustion", name: "past --max-conns-per-ip at the " + door + " door", bound: 3 * quick, counted: "rejected/" + door, conns: 101,
			attack: func(t *testing.T, e *env) {
				conns := dialMany(t, from, addr(e), 100)
				for _, c := range conns {
					hold(t, c)
				}
				extra := dialMany(t, from, addr(e), 1)[0]
				check(t, readAllWithin(t, extra, quick))
			}}
	}
	nothing := func(*testing.T, net.Conn) {}
	httpBusy := func(t *testing.T, got string) {
		if !strings.HasPrefix(got, "HTTP/1.1 503") {
			t.Errorf("got %q, want 503", got)
		}
	}
	return []fault{
		perIP("native", "127.0.0.11", func(e *env) string { return e.Native }, func(t *testing.T, c net.Conn) {
			_, _ = c.Write(hello("held"))
		}, func(t *testing.T, got string) {
			f, err := wire.NewReader(strings.NewReader(got), 0).ReadFrame()
			if we, _ := wire.ParseError(f.Body); err != nil || we.Code != wire.CodeBusy {
				t.Errorf("got %q, want BUSY", got)
			}
		}),
		perIP("legacy", "127.0.0.12", func(e *env) string { return e.Legacy }, nothing, func(t *testing.T, got string) {
			if got != "ERROR BUSY\n" {
				t.Errorf("got %q, want ERROR BUSY", got)
			}
		}),
		perIP("web", "127.0.0.13", func(e *env) string { return e.Web }, nothing, httpBusy),
		{family: "exhaustion", name: "past the admin listener's own 256", bound: 3 * quick, counted: "rejected/admin", conns: 257, attack: func(t *testing.T, e *env) {
			dialMany(t, "127.0.0.14", e.Admin, 256)
			httpBusy(t, readAllWithin(t, dialMany(t, "127.0.0.14", e.Admin, 1)[0], quick))
		}},
		{family: "exhaustion", name: "a WebSocket upgrade past --max-conns-per-ip", bound: 3 * quick, counted: "rejected/web", conns: 101, attack: func(t *testing.T, e *env) {
			dialMany(t, "127.0.0.15", e.Web, 100)
			c := dialMany(t, "127.0.0.15", e.Web, 1)[0]
			fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", e.Web)
			httpBusy(t, readAllWithin(t, c, quick))
		}},
		{family: "exhaustion", name: "frame headers claiming 1 MiB on 300 connections", bound: hbBound + 3*quick, counted: "closed/heartbeat timeout", conns: 300, attack: func(t *testing.T, e *env) {
			heap := heapInUse()
			var conns []*Conn
			for i := range 300 {
				c := DialFrom(t, fmt.Sprintf("127.0.1.%d", 1+i%200), e.Native)
				c.Hello(wire.Hello{Name: "claimer"})
				c.Send(append([]byte{0, 0x0f, 0xff, 0xf0, 1, byte(wire.TypeRequest), 0, 0}, make([]byte, 24)...))
				conns = append(conns, c)
			}
			time.Sleep(100 * time.Millisecond)
			if grew := int64(heapInUse()) - int64(heap); grew > 32<<20 {
				t.Errorf("heap grew %d MiB", grew>>20)
			}
			for _, c := range conns {
				c.ExpectClosed() // half a frame is no sign of life: the heartbeat closes them
			}
		}},
		{family: "exhaustion", name: "POST /rpc body over 1 MiB", bound: quick, counted: "http/web/413",
			attack: httpStatus("web", "POST", "/rpc", jsonHeader, `[`+strings.Repeat(`1,`, 600<<10)+`1]`, 413)},
		{family: "exhaustion", name: "JSON-RPC batch of 1,001 calls", bound: quick, counted: "code/unknown/BAD_FRAME",
			attack: rpcError(`[`+strings.Repeat(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},`, 1000)+`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}]`, -32600)},
		{family: "exhaustion", name: "JSON-RPC params of 100,000 elements", bound: quick, counted: "code/math.add/BAD_PAYLOAD",
			attack: rpcError(`{"jsonrpc":"2.0","method":"math.add","params":[`+strings.Repeat(`1,`, 100000)+`1],"id":1}`, -32602)},
		{family: "exhaustion", name: "HTTP headers over 64 KiB", bound: quick, counted: "unserved/web", attack: func(t *testing.T, e *env) {
			c := dialMany(t, "127.0.0.1", e.Web, 1)[0]
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", e.Web, strings.Repeat("a", 70<<10))
			if got := readAllWithin(t, c, quick); !strings.HasPrefix(got, "HTTP/1.1 431") {
				t.Errorf("got %.40q, want 431", got)
			}
		}},
		{family: "exhaustion", name: "48 WebSocket messages of 1 MiB", bound: 20 * quick, counted: "code/test.sleep/BUSY", attack: func(t *testing.T, e *env) {
			c, br := DialWS(t, e.Web, "")
			_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // 48 MiB of JSON take a while under -race
			heap := heapInUse()
			msg := []byte(`{"jsonrpc":"2.0","method":"test.sleep","params":[2000],"id":1,"x":"` + strings.Repeat("a", 1<<20-100) + `"}`)
			frame := WSFrame(0x1, true, msg)
			go func() {
				for range 48 {
					if _, err := c.Write(frame); err != nil {
						return
					}
				}
			}()
			busy := 0
			for range 48 {
				_, payload := ReadWSFrame(t, br)
				if bytes.Contains(payload, []byte("too many bytes in flight")) {
					busy++
				}
			}
			if grew := int64(heapInUse()) - int64(heap); grew > 64<<20 {
				t.Errorf("heap grew %d MiB", grew>>20)
			}
			if busy == 0 {
				t.Error("no message was refused for the bytes in flight")
			}
		}},
	}
}

var jsonHeader = map[string]string{"Content-Type": "application/json"}

// httpStatus sends one request to the web or admin door and expects a
// status.
func httpStatus(door, method, path string, hdr map[string]string, body string, want int) func(*testing.T, *env) {
	return httpStatusFrom("127.0.0.1", door, method, path, hdr, body, want)
}

// httpStatusFrom is httpStatus from a loopback address of its own.
func httpStatusFrom(from, door, method, path string, hdr map[string]string, body string, want int) func(*testing.T, *env) {
	return func(t *testing.T, e *env) {
		if got := doHTTP(t, e, from, door, method, path, hdr, body); got != want {
			t.Errorf("%s %s: %d, want %d", method, path, got, want)
		}
	}
}

// doHTTP sends one request (Host among the headers) on a connection of its
// own, and returns the status.
func doHTTP(t *testing.T, e *env, from, door, method, path string, hdr map[string]string, body string) int {
	t.Helper()
	addr := e.Web
	if door == "admin" {
		addr = e.Admin
	}
	r := NewRequest(t, method, "http://"+addr+path, body, hdr)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}, Timeout: 10 * time.Second}
	resp, err := hc.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// rpcError posts a JSON-RPC body and expects an error of that code (the
// first, for a batch).
func rpcError(body string, code int) func(*testing.T, *env) {
	return func(t *testing.T, e *env) {
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := hc.Post("http://"+e.Web+"/rpc", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var one struct {
			Error *struct{ Code int } `json:"error"`
		}
		if json.Unmarshal(b, &one) != nil {
			var many []json.RawMessage
			if json.Unmarshal(b, &many) == nil && len(many) > 0 {
				_ = json.Unmarshal(many[0], &one)
			}
		}
		if one.Error == nil || one.Error.Code != code {
			t.Errorf("got %d %.200s, want error %d", resp.StatusCode, b, code)
		}
	}
}

func slowloris() []fault {
	return []fault{
		{family: "slowloris", name: "native: HELLO one byte at a time", bound: hsBound, counted: "handshake/timeout", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Native)
			h := hello("slow")
			go func() {
				for _, b := range h[:len(h)-1] {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			c.ExpectClosed()
		}},
		{family: "slowloris", name: "native: connect and say nothing", bound: hsBound, counted: "handshake/timeout", attack: func(t *testing.T, e *env) {
			Dial(t, e.Native).ExpectClosed()
		}},
		{family: "slowloris", name: "native: a frame body one byte at a time", bound: hbBound, counted: "closed/heartbeat timeout", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "slow")
			r := req(1, "math.add", Operands(1, 2))
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for _, b := range r[:len(r)-1] {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
			c.ExpectClosed()
		}},
		{family: "slowloris", name: "legacy: a partial packet", bound: hsBound, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			c.Send(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2)[:6])
			if got := c.ReadLine(); got != "ERROR BAD_FRAME\n" {
				t.Errorf("got %q", got)
			}
			c.ExpectClosed()
		}},
		{family: "slowloris", name: "web: HTTP headers never finished", bound: hdrBound, counted: "unserved/web", attack: slowHeaders("web")},
		{family: "slowloris", name: "admin: HTTP headers never finished", bound: hdrBound, counted: "unserved/admin", attack: slowHeaders("admin")},
		{family: "slowloris", name: "web: POST /rpc body never finished", bound: hsBound, counted: "http/web/400", attack: func(t *testing.T, e *env) {
			c := dialMany(t, "127.0.0.1", e.Web, 1)[0]
			fmt.Fprintf(c, "POST /rpc HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"", e.Web)
			if got := readAllWithin(t, c, hsBound); !strings.HasPrefix(got, "HTTP/1.1 400") {
				t.Errorf("got %.60q, want 400", got)
			}
		}},
		{family: "slowloris", name: "WebSocket: a frame never finished", bound: hsBound, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c, br := DialWS(t, e.Web, "")
			f := WSFrame(0x1, true, []byte(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`))
			_, _ = c.Write(f[:10])
			if got := WSCloseStatus(t, br); got != 1008 {
				t.Errorf("close %d, want 1008", got)
			}
		}},
		{family: "slowloris", name: "WebSocket: fragments dripped", bound: hsBound, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c, br := DialWS(t, e.Web, "")
			call := []byte(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`)
			go func() {
				for i := 0; i < len(call)-1; i++ {
					op := byte(0x0)
					if i == 0 {
						op = 0x1
					}
					if _, err := c.Write(WSFrame(op, false, call[i:i+1])); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			if got := WSCloseStatus(t, br); got != 1008 {
				t.Errorf("close %d, want 1008", got)
			}
		}},
		{family: "slowloris", name: "TLS: handshake never finished", secure: true, bound: hsBound, counted: "handshake/timeout", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.tlsNative)
			c.Send([]byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01}) // the start of a ClientHello
			c.ExpectClosed()
		}},
	}
}

// slowHeaders sends half a request line and waits for the close.
func slowHeaders(door string) func(*testing.T, *env) {
	return func(t *testing.T, e *env) {
		addr := e.Web
		if door == "admin" {
			addr = e.Admin
		}
		c := dialMany(t, "127.0.0.1", addr, 1)[0]
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: ")
		readAllWithin(t, c, hdrBound)
	}
}

func deadPeers() []fault {
	return []fault{
		{family: "dead peers", name: "silent after HELLO (no PONG)", bound: hbBound, counted: "closed/heartbeat timeout", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "silent")
			_ = c.SetReadDeadline(time.Now().Add(hbBound))
			for { // read PINGs, never answer
				if _, err := c.Rd.ReadFrame(); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Error("not closed within the heartbeat bound")
					}
					return
				}
			}
		}},
		{family: "dead peers", name: "process stopped with SIGSTOP", bound: hbBound + 2*quick, counted: "closed/heartbeat timeout", child: true, attack: func(t *testing.T, e *env) {
			p := startChild(t, "idle", e.Native)
			id, _ := strconv.ParseUint(p.ready, 10, 64)
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			WaitFor(t, hbBound+quick, "the stopped client to be closed", func() bool { return !listed(e, id) })
		}},
		{family: "dead peers", name: "process killed with 64 requests in flight", bound: 3 * quick, counted: "closed/client closed", child: true, attack: func(t *testing.T, e *env) {
			p := startChild(t, "inflight", e.Native)
			id, _ := strconv.ParseUint(p.ready, 10, 64)
			if err := p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			WaitFor(t, quick, "the killed client to be closed", func() bool { return !listed(e, id) })
		}},
		{family: "dead peers", name: "reset in the middle of a request", bound: quick, counted: "closed/read error", attack: func(t *testing.T, e *env) {
			c := e.conn(t, "reset")
			id := lastID(e, "reset")
			c.Send(req(1, "math.add", Operands(1, 2))[:15])
			_ = c.Conn.(*net.TCPConn).SetLinger(0)
			c.Close()
			WaitFor(t, quick, "the reset client to be closed", func() bool { return !listed(e, id) })
		}},
		{family: "dead peers", name: "native: pipelines and never reads", bound: wrBound + quick, counted: "closed/slow consumer", attack: func(t *testing.T, e *env) {
			c := smallWindow(t, e.Native)
			c.Hello(wire.Hello{Name: "non-reader"})
			big := wire.AppendRequest(nil, 1, "sys.echo", make([]byte, 512<<10))
			defer flood(c, big)()
			WaitFor(t, wrBound, "the non-reader to be closed", func() bool { return e.ClosedWith("non-reader", "slow consumer") })
		}},
		{family: "dead peers", name: "legacy: pipelines and never reads", bound: wrBound + quick, counted: "closed/slow consumer", attack: func(t *testing.T, e *env) {
			c := smallWindow(t, e.Legacy)
			packet := bytes.Repeat(legacy.Append(nil, binary.LittleEndian, "MULTIPLICACION", -32768, -32768), 4096)
			defer flood(c, packet)()
			WaitFor(t, wrBound, "the non-reader to be closed", func() bool { return lastClosed(e, "legacy", "slow consumer") })
		}},
		{family: "dead peers", name: "WebSocket: never reads", bound: wrBound + quick, counted: "closed/slow consumer", attack: func(t *testing.T, e *env) {
			c, _ := DialWS(t, e.Web, "")
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			_ = c.SetDeadline(time.Time{})
			msg := WSFrame(0x1, true, []byte(`{"jsonrpc":"2.0","method":"sys.echo","params":["`+strings.Repeat("e", 200<<10)+`"],"id":1}`))
			defer flood(c, msg)()
			WaitFor(t, wrBound, "the non-reader to be closed", func() bool { return lastClosed(e, "ws", "slow consumer") })
		}},
		{family: "dead peers", name: "WebSocket: never answers PINGs", bound: hbBound, counted: "closed/heartbeat timeout", attack: func(t *testing.T, e *env) {
			c, _ := DialWS(t, e.Web, "")
			readAllWithin(t, c, hbBound) // PINGs, unanswered, then the close
		}},
		{family: "dead peers", name: "legacy: silent past --legacy-idle", bound: 2*time.Second + quick, counted: "closed/idle timeout", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			if got := c.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2)); got != "3\n" {
				t.Fatalf("got %q", got)
			}
			c.ExpectClosed()
		}},
	}
}

// flood writes b to c over and over, from a goroutine of its own, until
// the returned stop is called or a write fails.
func flood(c io.Writer, b []byte) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	return func() { close(done) }
}

// listed reports whether a client id is connected.
func listed(e *env, id uint64) bool {
	for _, ci := range e.Clients().Clients {
		if ci.ID == id {
			return true
		}
	}
	return false
}

// lastID is the id of the newest connected client of that name.
func lastID(e *env, name string) uint64 {
	var id uint64
	for _, ci := range e.Clients().Clients {
		if ci.Name == name && ci.ID > id {
			id = ci.ID
		}
	}
	return id
}

// lastClosed reports whether the session closed last was of that door
// and closed for that reason.
func lastClosed(e *env, door, reason string) bool {
	cl := e.Clients().Closed
	return len(cl) > 0 && cl[0].Door == door && cl[0].Reason == reason
}

func legacyPackets() []fault {
	le := binary.LittleEndian
	f := func(name string, packet []byte, want string, closes bool, counted string) fault {
		return fault{family: "legacy packets", name: name, bound: quick, counted: counted, attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			if got := c.LegacyLine(packet); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if closes {
				c.ExpectClosed()
				return
			}
			if got := c.LegacyLine(legacy.Append(nil, le, "SUMA", 2, 3)); got != "5\n" {
				t.Errorf("then got %q", got)
			}
		}}
	}
	return []fault{
		f("command length 0", legacy.Append(nil, le, "", 1, 2), "ERROR BAD_FRAME\n", true, "closed/bad frame"),
		f("command length 33", legacy.Append(nil, le, strings.Repeat("A", 33), 1, 2), "ERROR BAD_FRAME\n", true, "closed/bad frame"),
		f("negative command length", append([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 2, 0}, "SUMA"...), "ERROR BAD_FRAME\n", true, "closed/bad frame"),
		f("HTTP request to the legacy door", []byte("GET / HTTP/1.1\r\n\r\n"), "ERROR BAD_FRAME\n", true, "closed/bad frame"),
		f("unknown command", legacy.Append(nil, le, "RAIZ", 1, 2), "ERROR UNKNOWN_METHOD\n", false, "code/unknown/UNKNOWN_METHOD"),
		f("command in lower case", legacy.Append(nil, le, "suma", 1, 2), "ERROR UNKNOWN_METHOD\n", false, "code/unknown/UNKNOWN_METHOD"),
		f("command with NUL bytes", legacy.Append(nil, le, "SUMA\x00\x00", 1, 2), "ERROR UNKNOWN_METHOD\n", false, "code/unknown/UNKNOWN_METHOD"),
		f("division by zero", legacy.Append(nil, le, "DIVISION", 1, 0), "ERROR DIVISION_BY_ZERO\n", false, "code/math.div/DIVISION_BY_ZERO"),
		{family: "legacy packets", name: "byte order changed mid-connection", bound: quick, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			if got := c.LegacyLine(legacy.Append(nil, le, "SUMA", 1, 2)); got != "3\n" {
				t.Fatalf("got %q", got)
			}
			if got := c.LegacyLine(legacy.Append(nil, binary.BigEndian, "SUMA", 1, 2)); got != "ERROR BAD_FRAME\n" {
				t.Errorf("got %q", got)
			}
			c.ExpectClosed()
		}},
		{family: "legacy packets", name: "native HELLO at the legacy door", bound: quick, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			c.Send(hello("lost"))
			msg := c.ExpectError(0, wire.CodeBadFrame)
			if !strings.Contains(msg, "native door") {
				t.Errorf("no hint: %q", msg)
			}
			c.ExpectClosed()
		}},
		{family: "legacy packets", name: "packet cut short by a half-close", bound: quick, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			c.Send(legacy.Append(nil, le, "SUMA", 1, 2)[:9])
			_ = c.Conn.(*net.TCPConn).CloseWrite()
			if got := c.ReadLine(); got != "ERROR BAD_FRAME\n" {
				t.Errorf("got %q", got)
			}
			c.ExpectClosed()
		}},
		{family: "legacy packets", name: "10,000 packets in one write", bound: 5 * quick, counted: "code/math.sub/OK", attack: func(t *testing.T, e *env) {
			c := Dial(t, e.Legacy)
			var all []byte
			for i := range 10000 {
				all = legacy.Append(all, le, "RESTA", int16(i), 7)
			}
			go func() { _, _ = c.Write(all) }()
			br := bufio.NewReader(c.Conn)
			_ = c.SetReadDeadline(time.Now().Add(5 * quick))
			for i := range 10000 {
				line, err := br.ReadString('\n')
				if err != nil || line != strconv.Itoa(int(int16(i))-7)+"\n" {
					t.Fatalf("answer %d: %q %v", i, line, err)
				}
			}
		}},
	}
}

func arithmetic() []fault {
	const maxI, minI = int64(1<<63 - 1), int64(-1 << 63)
	f := func(name, method string, a, b int64, code wire.Code) fault {
		return fault{family: "arithmetic", name: "native " + name, bound: quick, counted: "code/" + method + "/" + code.String(),
			attack: nativeAnswer(code, req(1, method, Operands(a, b)))}
	}
	j := func(name, body string, code int, counted string) fault {
		return fault{family: "arithmetic", name: "JSON-RPC " + name, bound: quick, counted: counted, attack: rpcError(body, code)}
	}
	call := func(method, params string) string {
		return `{"jsonrpc":"2.0","method":"` + method + `","params":` + params + `,"id":1}`
	}
	return []fault{
		f("add overflow", "math.add", maxI, 1, wire.CodeOverflow),
		f("add underflow", "math.add", minI, -1, wire.CodeOverflow),
		f("sub overflow", "math.sub", minI, 1, wire.CodeOverflow),
		f("sub of the minimum", "math.sub", 0, minI, wire.CodeOverflow),
		f("mul overflow", "math.mul", 1<<32, 1<<31, wire.CodeOverflow),
		f("mul of the minimum by -1", "math.mul", minI, -1, wire.CodeOverflow),
		f("div by zero", "math.div", 1, 0, wire.CodeDivisionByZero),
		f("div of zero by zero", "math.div", 0, 0, wire.CodeDivisionByZero),
		j("mul overflow", call("math.mul", `[9007199254740991,9007199254740991]`), -32007, "code/math.mul/OVERFLOW"),
		j("div by zero", call("math.div", `[1,0]`), -32006, "code/math.div/DIVISION_BY_ZERO"),
		j("add overflow at the int64 edge", call("math.add", `[9223372036854775807,1]`), -32007, "code/math.add/OVERFLOW"),
		j("operand past int64", call("math.add", `[9223372036854775808,1]`), -32602, "code/math.add/BAD_PAYLOAD"),
		j("fractional operand", call("math.add", `[1.5,1]`), -32602, "code/math.add/BAD_PAYLOAD"),
		j("exponent operand", call("math.add", `[1e400,1]`), -32602, "code/math.add/BAD_PAYLOAD"),
		j("string operand", call("math.add", `["1",1]`), -32602, "code/math.add/BAD_PAYLOAD"),
		j("one operand", call("math.add", `[1]`), -32602, "code/math.add/BAD_PAYLOAD"),
		j("operand of 10,000 digits", call("math.add", `[`+strings.Repeat("9", 10000)+`,1]`), -32602, "code/math.add/BAD_PAYLOAD"),
	}
}

func authTLS() []fault {
	return []fault{
		{family: "auth and TLS", name: "native: no token", secure: true, bound: quick, counted: "auth/native",
			attack: func(t *testing.T, e *env) {
				c := DialFrom(t, "127.0.0.20", e.Native)
				c.Send(helloToken("no-token", ""))
				expectFatal(t, c, wire.CodeUnauthorized)
			}},
		{family: "auth and TLS", name: "native: wrong token, answered late", secure: true, bound: quick, counted: "auth/native",
			attack: func(t *testing.T, e *env) {
				c := DialFrom(t, "127.0.0.21", e.Native)
				start := time.Now()
				c.Send(helloToken("wrong", "wrong-token"))
				expectFatal(t, c, wire.CodeUnauthorized)
				if d := time.Since(start); d < 100*time.Millisecond {
					t.Errorf("a wrong token was answered after %v, want at least 100ms", d)
				}
			}},
		{family: "auth and TLS", name: "native: a token guesser does not lock out a good token", secure: true, bound: 8 * quick, counted: "auth/native",
			attack: func(t *testing.T, e *env) {
				for i := range 6 {
					c := DialFrom(t, "127.0.0.22", e.Native)
					c.Send(helloToken("guesser", fmt.Sprint("guess-", i)))
					f, err := c.ReadErr()
					if err == nil && f.Type == wire.TypeWelcome {
						t.Fatal("a wrong token got in")
					}
					c.Close()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				// Past the limit, one token a second from that address is
				// checked, and a good one gets in: a client that retries
				// as clients do (after a second) is not locked out.
				opts := &client.Options{Name: "good", Token: goodToken, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.22")}}}
				var err error
				for try := 0; try < 3; try++ {
					var cl *client.Client
					if cl, err = client.Dial(ctx, e.Native, opts); err == nil {
						cl.Close()
						return
					}
					time.Sleep(1100 * time.Millisecond)
				}
				t.Fatalf("a good token from the guesser's address, three tries a second apart: %v", err)
			}},
		{family: "auth and TLS", name: "WebSocket: wrong token", secure: true, bound: quick, counted: "auth/ws",
			attack: httpStatusWS("127.0.0.23", "Authorization: Bearer wrong\r\n", 401)},
		{family: "auth and TLS", name: "POST /rpc: wrong token", secure: true, bound: quick, counted: "auth/http",
			attack: httpStatusFrom("127.0.0.24", "web", "POST", "/rpc", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer wrong"},
				`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`, 401)},
		{family: "auth and TLS", name: "admin: wrong admin token", secure: true, bound: quick, counted: "auth/admin",
			attack: httpStatusFrom("127.0.0.25", "admin", "GET", "/api/clients", map[string]string{"Authorization": "Bearer wrong"}, "", 401)},
		{family: "auth and TLS", name: "admin: a client token is not an admin token", secure: true, bound: quick, counted: "http/admin/401",
			attack: httpStatusFrom("127.0.0.26", "admin", "GET", "/api/clients", map[string]string{"Authorization": "Bearer " + goodToken}, "", 401)},
		{family: "auth and TLS", name: "native: sys.kick with a client token", secure: true, bound: quick, counted: "code/sys.kick/UNKNOWN_METHOD",
			attack: nativeAnswer(wire.CodeUnknownMethod, req(1, "sys.kick", []byte(`[999999,"x"]`)))},
		{family: "auth and TLS", name: "plain text to the TLS door", secure: true, bound: hsBound, counted: "handshake/tls",
			attack: func(t *testing.T, e *env) {
				c := Dial(t, e.tlsNative)
				c.Send(hello("plain"))
				readAllWithin(t, c.Conn, hsBound)
			}},
		{family: "auth and TLS", name: "TLS with a certificate the client does not trust", secure: true, bound: quick, counted: "handshake/tls",
			attack: func(t *testing.T, e *env) {
				c, err := tls.Dial("tcp", e.tlsNative, &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
				if err == nil {
					c.Close()
					t.Fatal("an untrusted certificate was accepted")
				}
			}},
		{family: "auth and TLS", name: "TLS, then no HELLO", secure: true, bound: hsBound, counted: "handshake/timeout",
			attack: func(t *testing.T, e *env) {
				c, err := tls.Dial("tcp", e.tlsNative, e.tlsConfig)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				readAllWithin(t, c, hsBound)
			}},
	}
}

// httpStatusWS asks for a WebSocket with extra header lines and expects an
// HTTP status instead of the upgrade.
func httpStatusWS(from, header string, want int) func(*testing.T, *env) {
	return func(t *testing.T, e *env) {
		c := dialMany(t, from, e.Web, 1)[0]
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n", e.Web, header)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 "+strconv.Itoa(want)) {
			t.Errorf("got %q %v, want %d", line, err, want)
		}
	}
}

func browser() []fault {
	ws := func(name string, frames [][]byte, want int) fault {
		return fault{family: "browser", name: "WebSocket: " + name, bound: quick, counted: "closed/bad frame", attack: func(t *testing.T, e *env) {
			c, br := DialWS(t, e.Web, "")
			for _, f := range frames {
				_, _ = c.Write(f)
			}
			if got := WSCloseStatus(t, br); got != want {
				t.Errorf("close %d, want %d", got, want)
			}
		}}
	}
	call := []byte(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`)
	kick := `{"jsonrpc":"2.0","method":"sys.kick","params":[1,"csrf"],"id":1}`
	page := func(name, door, method, path, body string, hdr map[string]string, want int) fault {
		return fault{family: "browser", name: name, bound: quick, counted: fmt.Sprintf("http/%s/%d", door, want),
			attack: httpStatus(door, method, path, hdr, body, want)}
	}
	rsv1 := WSFrame(0x1, true, call)
	rsv1[0] |= 0x40
	return []fault{
		ws("invalid UTF-8", [][]byte{WSFrame(0x1, true, []byte("[\"\xff\xfe\"]"))}, 1007),
		ws("unmasked frame", [][]byte{append([]byte{0x81, byte(len(call))}, call...)}, 1002),
		ws("binary message", [][]byte{WSFrame(0x2, true, call)}, 1003),
		{family: "browser", name: "WebSocket: message over --max-frame", bound: quick, counted: "closed/frame too large", attack: func(t *testing.T, e *env) {
			c, br := DialWS(t, e.Web, "")
			go func() { _, _ = c.Write(WSFrame(0x1, true, make([]byte, 1<<20+1))) }()
			if got := WSCloseStatus(t, br); got != 1009 {
				t.Errorf("close %d, want 1009", got)
			}
		}},
		ws("reserved bit set", [][]byte{rsv1}, 1002),
		ws("continuation with nothing to continue", [][]byte{WSFrame(0x0, true, call)}, 1002),
		ws("control frame over 125 bytes", [][]byte{WSFrame(0x9, true, make([]byte, 126))}, 1002),
		ws("fragmented control frame", [][]byte{WSFrame(0x9, false, []byte("x"))}, 1002),
		ws("unknown opcode", [][]byte{WSFrame(0x3, true, call)}, 1002),
		{family: "browser", name: "WebSocket: JSON that is not JSON-RPC", bound: quick, counted: "code/unknown/BAD_FRAME", attack: func(t *testing.T, e *env) {
			c, br := DialWS(t, e.Web, "")
			_, _ = c.Write(WSFrame(0x1, true, []byte(`{"hello":"world"}`)))
			for {
				_, msg := ReadWSFrame(t, br)
				if bytes.Contains(msg, []byte(`"event.`)) {
					continue
				}
				if !bytes.Contains(msg, []byte("-32600")) {
					t.Errorf("got %s", msg)
				}
				return
			}
		}},
		page("WebSocket from another origin", "web", "GET", "/ws", "", wsHeaders("Origin", "https://attacker.example"), 403),
		page("WebSocket with an https Origin on the http door", "web", "GET", "/ws", "", wsHeaders("Origin", "https://127.0.0.1"), 403),
		page("WebSocket from a null origin", "web", "GET", "/ws", "", wsHeaders("Origin", "null"), 403),
		page("text/plain POST of sys.kick", "web", "POST", "/rpc", kick,
			map[string]string{"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://attacker.example"}, 415),
		page("form POST of sys.kick", "web", "POST", "/rpc", kick, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415),
		page("JSON POST from another origin", "web", "POST", "/rpc", kick, map[string]string{"Content-Type": "application/json", "Origin": "https://attacker.example"}, 403),
		page("JSON POST marked cross-site", "web", "POST", "/rpc", kick, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403),
		page("DNS rebinding: the GUI", "web", "GET", "/", "", map[string]string{"Host": "attacker.example"}, 421),
		page("DNS rebinding: /rpc", "web", "POST", "/rpc", kick, map[string]string{"Host": "attacker.example", "Content-Type": "application/json", "Origin": "http://attacker.example"}, 421),
		page("DNS rebinding: /ws", "web", "GET", "/ws", "", wsHeaders("Host", "attacker.example", "Origin", "http://attacker.example"), 421),
		page("DNS rebinding: the admin API", "admin", "GET", "/api/clients", "", map[string]string{"Host": "attacker.example"}, 421),
		page("the admin API from a page", "admin", "GET", "/api/clients", "", map[string]string{"Origin": "http://127.0.0.1"}, 403),
		page("a kick from a page", "admin", "DELETE", "/api/clients/1", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403),
		page("GET /rpc", "web", "GET", "/rpc", "", nil, 405),
		{family: "browser", name: "JSON-RPC: not JSON", bound: quick, counted: "code/unknown/BAD_FRAME", attack: rpcError(`{"jsonrpc":`, -32700)},
		{family: "browser", name: "JSON-RPC: an empty batch", bound: quick, counted: "code/unknown/BAD_FRAME", attack: rpcError(`[]`, -32600)},
		{family: "browser", name: "JSON-RPC: nested 100,000 deep", bound: quick, counted: "code/unknown/BAD_FRAME",
			attack: rpcError(strings.Repeat("[", 100000)+strings.Repeat("]", 100000), -32700)},
		{family: "browser", name: "JSON-RPC: a wrong version", bound: quick, counted: "code/unknown/BAD_FRAME",
			attack: rpcError(`{"jsonrpc":"1.0","method":"math.add","params":[1,2],"id":1}`, -32600)},
	}
}

// wsHeaders are the headers of a WebSocket upgrade, plus more as pairs.
func wsHeaders(kv ...string) map[string]string {
	h := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

func adminAPI() []fault {
	a := func(name, method, path string, want int) fault {
		return fault{family: "admin API", name: name, bound: quick, counted: fmt.Sprintf("http/admin/%d", want),
			attack: httpStatus("admin", method, path, nil, "", want)}
	}
	return []fault{
		a("kick of a client that does not exist", "DELETE", "/api/clients/999999", 404),
		a("kick of an id that is not a number", "DELETE", "/api/clients/abc", 400),
		a("kick of id 0", "DELETE", "/api/clients/0", 404),
		a("kick with a reason over 200 bytes", "DELETE", "/api/clients/1?reason="+strings.Repeat("r", 201), 400),
		a("client list of an unknown scope", "GET", "/api/clients?scope=galaxy", 400),
		a("client list with a negative offset", "GET", "/api/clients?offset=-1", 400),
		a("client list with a limit over 1000", "GET", "/api/clients?limit=1001", 400),
		a("POST to the client list", "POST", "/api/clients", 405),
		a("a path that does not exist", "GET", "/api/nothing", 404),
		a("the admin listener asked for a web page", "GET", "/", 404),
	}
}

// smallWindow dials addr with a 4 KiB receive buffer, set before the
// connection opens so that the window it advertises is small: a peer that
// does not read stalls the server's writes at once.
func smallWindow(t *testing.T, addr string) *Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewConn(t, c)
}
