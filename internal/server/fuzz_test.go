package server_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/wire"
)

// FuzzServer writes arbitrary bytes into live connections on both doors,
// raw and after a valid HELLO, while a canary client keeps computing. The
// server must close or answer every such connection within its timeouts,
// and the canary must always get the right answer.
func FuzzServer(f *testing.F) {
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "fuzz"})
	seeds := [][]byte{
		wire.AppendRequest(nil, 1, "math.add", Operands(1, 2)),
		append(wire.AppendRequest(nil, 1, "math.div", Operands(1, 0)), wire.AppendGoodbye(nil, "")...),
		wire.AppendRequestDeadline(nil, 2, 5, "test.sleep", Ms(10000)),
		wire.AppendFrame(nil, wire.TypePing, 0, 3, []byte("x")),
		{0xff, 0xff, 0xff, 0xff},
		hello,
		legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2),
		legacy.Append(nil, binary.BigEndian, "DIVISION", 1, 0),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
	for _, s := range seeds {
		for mode := range uint8(3) {
			f.Add(mode, s)
		}
	}
	srv := Start(f, server.Config{HandshakeTimeout: time.Second, Linger: 200 * time.Millisecond, MaxFrame: 1 << 16})
	canary, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "canary"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { canary.Close() })
	var n int64
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		addr := srv.Native
		if mode%3 == 2 {
			addr = srv.Legacy
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if mode%3 == 1 {
			data = append(append([]byte(nil), hello...), data...)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(data); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		// Whatever was sent, the server answers and closes: reading must
		// reach EOF (or a reset) well before the deadline.
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("mode %d: the server kept the connection open", mode)
			}
		}
		n++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if got, err := canary.Add(ctx, n, 1); err != nil || got != n+1 {
			t.Fatalf("canary: add(%d, 1) = %d, %v", n, got, err)
		}
	})
}
