package nexotest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// DialWS opens a WebSocket on the web door at addr by hand, with extra
// request header lines (each ending in "\r\n"), so that a test can send
// frames no library would. It returns the connection and its reader after
// the 101; the connection is closed when the test ends.
func DialWS(t testing.TB, addr, header string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n", addr, header)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		t.Fatalf("upgrade: %q %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return c, br
		}
	}
}

// WSCloseStatus reads server frames until a close frame, and returns its
// status (1005 when it has none).
func WSCloseStatus(t testing.TB, br *bufio.Reader) int {
	t.Helper()
	for {
		op, body := ReadWSFrame(t, br)
		if op == 0x8 {
			if len(body) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(body))
		}
	}
}

// ReadWSFrame reads one server frame (unmasked, as servers send them):
// its opcode and payload.
func ReadWSFrame(t testing.TB, br *bufio.Reader) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatalf("no frame: %v", err)
	}
	n := uint64(h[1] & 0x7f)
	var ext []byte
	switch n {
	case 126:
		ext = make([]byte, 2)
	case 127:
		ext = make([]byte, 8)
	}
	if ext != nil {
		if _, err := io.ReadFull(br, ext); err != nil {
			t.Fatalf("frame length: %v", err)
		}
		n = 0
		for _, b := range ext {
			n = n<<8 | uint64(b)
		}
	}
	if n > 64<<20 {
		t.Fatalf("a frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0f, payload
}

// WSFrame is a client frame: masked, as RFC 6455 requires, with op as its
// opcode and fin its FIN bit.
func WSFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	key := [4]byte{1, 2, 3, 4}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i%4])
	}
	return f
}

// NewRequest is an HTTP request with these headers; a "Host" one sets the
// request's Host, as a browser on a rebinding page would send it.
func NewRequest(t testing.TB, method, url, body string, hdr map[string]string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	return r
}

// FreeAddr is a loopback address with a port nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
