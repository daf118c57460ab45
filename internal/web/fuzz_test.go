package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/internal/nexotest"
)

// FuzzWebSocket sends arbitrary bytes into live WebSockets after the
// upgrade: raw (any frames, or none), as one masked text message, or as
// that message in fragments, while a canary WebSocket keeps computing.
// The server must answer or close every such connection within its
// timeouts, never crash, and the canary must always get the right answer.
func FuzzWebSocket(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`,
		`[{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":1},{"jsonrpc":"2.0","method":"sys.echo","params":["x"]}]`,
		`{"jsonrpc":"2.0","method":"test.sleep","params":[10000],"id":"a"}`,
		"[\"\xff\"]",
		"[1,[2,[3,[4",
		"\x81\x05hello", // an unmasked frame
		"\x88\x00",      // an unmasked close
	} {
		for mode := range uint8(3) {
			f.Add(mode, []byte(s))
		}
	}
	cfg := nexotest.FastConfig()
	cfg.HandshakeTimeout = time.Second
	cfg.MaxFrame = 1 << 16
	srv := nexotest.Start(f, cfg)
	ctx := context.Background()
	canary, _, err := websocket.Dial(ctx, "ws://"+srv.Web+"/ws?name=canary", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { canary.CloseNow() })
	if _, _, err := canary.Read(ctx); err != nil { // event.welcome
		f.Fatal(err)
	}
	var n int64
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		c, br := nexotest.DialWS(t, srv.Web, "")
		switch mode % 3 {
		case 0:
			_, _ = c.Write(data)
		case 1:
			_, _ = c.Write(nexotest.WSFrame(0x1, true, data[:min(len(data), 125)]))
		case 2:
			half := min(len(data)/2, 125)
			_, _ = c.Write(nexotest.WSFrame(0x1, false, data[:half]))
			_, _ = c.Write(nexotest.WSFrame(0x0, true, data[half:min(len(data), half+125)]))
		}
		_ = c.(*net.TCPConn).CloseWrite()
		// Whatever was sent, the server answers and closes: reading must
		// reach EOF (or a reset) well before the deadline.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, br); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("mode %d: the server kept the WebSocket open", mode%3)
			}
		}
		n++
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		call := fmt.Sprintf(`{"jsonrpc":"2.0","method":"math.add","params":[%d,1],"id":%d}`, n, n)
		if err := canary.Write(cctx, websocket.MessageText, []byte(call)); err != nil {
			t.Fatalf("canary write: %v", err)
		}
		for {
			_, msg, err := canary.Read(cctx)
			if err != nil {
				t.Fatalf("canary read: %v", err)
			}
			var m struct {
				ID     int64 `json:"id"`
				Result int64 `json:"result"`
			}
			if json.Unmarshal(msg, &m) == nil && m.ID == n {
				if m.Result != n+1 {
					t.Fatalf("canary: add(%d, 1) = %s", n, msg)
				}
				return
			}
		}
	})
}
