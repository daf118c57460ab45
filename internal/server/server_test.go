package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

func word(v int64) []byte                          { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
func float(f float64) []byte                       { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }
func request(id uint32, m string, p []byte) []byte { return wire.AppendRequest(nil, id, m, p) }

// TestMethods checks every method and every request-level error code over
// the native door, pipelined on one connection.
func TestMethods(t *testing.T) {
	srv := Start(t, server.Config{})
	tests := []struct {
		method  string
		payload []byte
		want    []byte    // RESPONSE payload
		code    wire.Code // or ERROR code
	}{
		{"math.add", Operands(2, 3), word(5), 0},
		{"math.add", Operands(math.MaxInt64, 1), nil, wire.CodeOverflow},
		{"math.sub", Operands(2, 3), word(-1), 0},
		{"math.sub", Operands(math.MinInt64, 1), nil, wire.CodeOverflow},
		{"math.mul", Operands(-4, 5), word(-20), 0},
		{"math.mul", Operands(math.MinInt64, -1), nil, wire.CodeOverflow},
		{"math.div", Operands(7, 2), float(3.5), 0},
		{"math.div", Operands(0, -5), float(0), 0}, // +0, never -0: compared byte for byte
		{"math.div", Operands(1, 0), nil, wire.CodeDivisionByZero},
		{"math.add", Operands(1, 2)[:15], nil, wire.CodeBadPayload},
		{"math.div", append(Operands(1, 2), 0), nil, wire.CodeBadPayload},
		{"sys.echo", []byte("hello"), []byte("hello"), 0},
		{"sys.echo", nil, nil, 0},
		{"sys.echo", bytes.Repeat([]byte{0xab}, 100000), bytes.Repeat([]byte{0xab}, 100000), 0},
		{"no.such", nil, nil, wire.CodeUnknownMethod},
		{"test.panic", nil, nil, wire.CodeInternal},
		{"test.sleep", []byte{1}, nil, wire.CodeBadPayload},
	}
	c, _ := Hello(t, srv.Native, "methods")
	var batch []byte
	for i, tt := range tests {
		batch = wire.AppendRequest(batch, uint32(i+1), tt.method, tt.payload)
	}
	c.Send(batch)
	for i, tt := range tests {
		f := c.Read()
		if f.ID != uint32(i+1) {
			t.Fatalf("got id %d, want %d (inline methods answer in order)", f.ID, i+1)
		}
		if tt.code != 0 {
			we, err := wire.ParseError(f.Body)
			if f.Type != wire.TypeError || err != nil || we.Code != tt.code {
				t.Errorf("%s: got %s, want ERROR %v", tt.method, String(f), tt.code)
			}
			continue
		}
		if f.Type != wire.TypeResponse || !bytes.Equal(f.Body, tt.want) {
			t.Errorf("%s: got %s, want RESPONSE % x", tt.method, String(f), tt.want)
		}
	}
	c.Send(request(99, "sys.info", nil))
	f := c.Read()
	var info struct {
		Server  string   `json:"server"`
		Version string   `json:"version"`
		UptimeS float64  `json:"uptime_s"`
		Clients int      `json:"clients"`
		Methods []string `json:"methods"`
	}
	if err := json.Unmarshal(f.Body, &info); err != nil {
		t.Fatalf("sys.info: %v in %s", err, String(f))
	}
	if info.Server != "nexo/0.1.0" || info.Clients != 1 || !strings.Contains(strings.Join(info.Methods, ","), "math.add,math.div,math.mul,math.sub") {
		t.Errorf("sys.info = %+v", info)
	}
}

func TestHandshake(t *testing.T) {
	srv := Start(t, server.Config{Heartbeat: time.Second})
	c1, w1 := Hello(t, srv.Native, "first")
	_, w2 := Hello(t, srv.Native, "")
	if w1.ClientID == 0 || w2.ClientID <= w1.ClientID {
		t.Errorf("client ids %d then %d: want increasing", w1.ClientID, w2.ClientID)
	}
	if w1.Server != "nexo/0.1.0" || w1.HeartbeatMS != 1000 || w1.MaxFrame != wire.DefaultMaxFrame {
		t.Errorf("welcome = %+v", w1)
	}
	// PING from the client: PONG with the same id and body.
	c1.Send(wire.AppendFrame(nil, wire.TypePing, 0, 77, []byte("abc")))
	if f := c1.Read(); f.Type != wire.TypePong || f.ID != 77 || string(f.Body) != "abc" {
		t.Errorf("got %s, want PONG 77 abc", String(f))
	}

	bad := []struct {
		name  string
		first []byte
		code  wire.Code
	}{
		{"request before hello", request(1, "math.add", Operands(1, 2)), wire.CodeBadFrame},
		{"ping before hello", wire.AppendFrame(nil, wire.TypePing, 0, 0, nil), wire.CodeBadFrame},
		{"hello not json", wire.AppendFrame(nil, wire.TypeHello, 0, 0, []byte("hi")), wire.CodeBadFrame},
		{"hello name too long", wire.AppendFrame(nil, wire.TypeHello, 0, 0, []byte(`{"name":"`+strings.Repeat("n", 65)+`"}`)), wire.CodeBadFrame},
		{"hello version 2", []byte{0, 0, 0, 8, 2, 1, 0, 0, 0, 0, 0, 0}, wire.CodeUnsupportedVersion},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c := Dial(t, srv.Native)
			c.Send(tt.first)
			c.ExpectError(0, tt.code)
			c.ExpectClosed()
		})
	}
}

// TestBadInput sends each kind of malformed input on its own connection
// while a canary client keeps computing; each gets its error and only its
// own connection closes.
func TestBadInput(t *testing.T) {
	srv := Start(t, server.Config{MaxFrame: 1 << 16})
	canary, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()
	stop := make(chan struct{})
	var canaryErr error
	var canaryOps int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			got, err := canary.Add(ctx, i, 1)
			cancel()
			if err != nil || got != i+1 {
				canaryErr = fmt.Errorf("canary: add(%d, 1) = %d, %v", i, got, err)
				return
			}
			canaryOps++
		}
	}()

	native := []struct {
		name    string
		input   []byte
		code    wire.Code
		noHello bool // send the input as the connection's first frame
	}{
		{"request before HELLO", request(1, "math.add", Operands(1, 2)), wire.CodeBadFrame, true},
		{"HTTP text to the native port", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), wire.CodeFrameTooLarge, true},
		{"wrong version", []byte{0, 0, 0, 8, 9, byte(wire.TypePing), 0, 0, 0, 0, 0, 0}, wire.CodeUnsupportedVersion, false},
		{"length claims 4 GiB", []byte{0xff, 0xff, 0xff, 0xff, 1, 3}, wire.CodeFrameTooLarge, false},
		{"length over max frame", []byte{0, 1, 0, 1}, wire.CodeFrameTooLarge, false},
		{"length below 8", []byte{0, 0, 0, 3, 1, 6, 0}, wire.CodeBadFrame, false},
		{"unknown type", []byte{0, 0, 0, 8, 1, 42, 0, 0, 0, 0, 0, 0}, wire.CodeBadFrame, false},
		{"unknown flag", []byte{0, 0, 0, 8, 1, byte(wire.TypePing), 0x80, 0, 0, 0, 0, 0}, wire.CodeBadFrame, false},
		{"deadline flag on ping", []byte{0, 0, 0, 8, 1, byte(wire.TypePing), 0, 1, 0, 0, 0, 0}, wire.CodeBadFrame, false},
		{"request with empty method", wire.AppendFrame(nil, wire.TypeRequest, 0, 5, []byte{0}), wire.CodeBadFrame, false},
		{"ping body over 64", wire.AppendFrame(nil, wire.TypePing, 0, 0, make([]byte, 65)), wire.CodeBadFrame, false},
		{"response from a client", wire.AppendResponse(nil, 1, nil), wire.CodeBadFrame, false},
		{"event from a client", wire.AppendEvent(nil, "t", nil), wire.CodeBadFrame, false},
		{"second hello", wire.AppendFrame(nil, wire.TypeHello, 0, 0, []byte("{}")), wire.CodeBadFrame, false},
		{"truncated frame", request(1, "math.add", Operands(1, 2))[:20], wire.CodeBadFrame, false},
	}
	for _, tt := range native {
		t.Run("native/"+tt.name, func(t *testing.T) {
			var c *Conn
			if tt.noHello {
				c = Dial(t, srv.Native)
			} else {
				c, _ = Hello(t, srv.Native, "bad")
			}
			c.Send(tt.input)
			if tt.name == "truncated frame" {
				c.Conn.(*net.TCPConn).CloseWrite()
			}
			c.ExpectError(0, tt.code)
			c.ExpectClosed()
		})
	}
	t.Run("native/request-level errors keep the connection", func(t *testing.T) {
		c, _ := Hello(t, srv.Native, "ok")
		c.Send(request(1, "nope", nil))
		c.ExpectError(1, wire.CodeUnknownMethod)
		c.Send(request(2, "math.add", []byte{1, 2, 3}))
		c.ExpectError(2, wire.CodeBadPayload)
		c.Send(request(3, "math.add", Operands(40, 2)))
		if f := c.Read(); f.Type != wire.TypeResponse || !bytes.Equal(f.Body, word(42)) {
			t.Errorf("got %s", String(f))
		}
	})

	le := func(n int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }
	legacyCases := []struct {
		name  string
		input []byte
		want  string
		close bool
	}{
		{"length 0", append(le(0), 1, 0, 2, 0), "ERROR BAD_FRAME\n", true},
		{"length -1", append(le(-1), 1, 0, 2, 0), "ERROR BAD_FRAME\n", true},
		{"length 1000", append(le(1000), 1, 0, 2, 0), "ERROR BAD_FRAME\n", true},
		{"HTTP text", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), "ERROR BAD_FRAME\n", true},
		{"unknown command", legacy.Append(nil, binary.LittleEndian, "RAIZ", 4, 0), "ERROR UNKNOWN_METHOD\n", false},
	}
	for _, tt := range legacyCases {
		t.Run("legacy/"+tt.name, func(t *testing.T) {
			c := Dial(t, srv.Legacy)
			if got := c.LegacyLine(tt.input); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if tt.close {
				c.ExpectClosed()
				return
			}
			if got := c.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 2, 2)); got != "4\n" {
				t.Errorf("after the error: %q", got)
			}
		})
	}
	close(stop)
	wg.Wait()
	if canaryErr != nil {
		t.Fatal(canaryErr)
	}
	if canaryOps == 0 {
		t.Fatal("the canary made no requests")
	}
	// Only the canary is left once every bad connection has been closed.
	WaitFor(t, 5*time.Second, "bad connections closed", func() bool { return srv.ClientCount() == 1 })
	reasons := map[string]int{}
	for _, ci := range srv.Clients().Closed {
		reasons[ci.Reason]++
	}
	if reasons["bad frame"] < 10 || reasons["frame too large"] != 2 || reasons["unsupported version"] != 1 {
		t.Errorf("closed reasons: %v", reasons)
	}
	// The totals agree with the ring, which holds every session here. A
	// total is counted just after its session enters the ring, so allow
	// that moment to pass.
	WaitFor(t, time.Second, "Stats().Closed to match the closed ring", func() bool {
		closed := srv.Stats().Closed
		for r, n := range reasons {
			if closed[r] != uint64(n) {
				return false
			}
		}
		return len(closed) == len(reasons)
	})
}

// TestLegacyDoor runs the four commands in both byte orders, pipelined.
func TestLegacyDoor(t *testing.T) {
	srv := Start(t, server.Config{})
	cases := []struct {
		cmd  string
		a, b int16
		want string
	}{
		{"SUMA", 3, 4, "7\n"},
		{"RESTA", 3, 10, "-7\n"},
		{"MULTIPLICACION", -32768, -32768, "1073741824\n"},
		{"DIVISION", 7, 2, "3.5\n"},
		{"DIVISION", -4, 2, "-2\n"},
		{"DIVISION", 1, 3, "0.3333333333333333\n"},
		{"DIVISION", 0, -5, "0\n"},
		{"DIVISION", 1, 0, "ERROR DIVISION_BY_ZERO\n"},
		{"suma", 1, 1, "ERROR UNKNOWN_METHOD\n"},
	}
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			c := Dial(t, srv.Legacy)
			var burst []byte
			for _, tc := range cases {
				burst = legacy.Append(burst, order, tc.cmd, tc.a, tc.b)
			}
			c.Send(burst)
			for _, tc := range cases {
				if got := c.ReadLine(); got != tc.want {
					t.Errorf("%s %d %d = %q, want %q", tc.cmd, tc.a, tc.b, got, tc.want)
				}
			}
		})
	}
}

// TestManyClientsPipelining: 200 clients each pipeline 100 requests at
// once; every answer is right and matched to its id, and the client count
// returns to 0.
func TestManyClientsPipelining(t *testing.T) {
	srv := Start(t, server.Config{})
	const clients, perClient = 200, 100
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	conns := make([]*client.Client, clients)
	for i := range conns {
		c, err := client.Dial(ctx, srv.Native, &client.Options{Name: fmt.Sprint("load-", i)})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	WaitFor(t, 5*time.Second, "200 clients listed", func() bool { return srv.ClientCount() == clients })
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var inner sync.WaitGroup
			for j := range perClient {
				inner.Add(1)
				go func() {
					defer inner.Done()
					a, b := int64(i*1000+j), int64(j-50)
					var got, want int64
					var err error
					switch j % 3 {
					case 0:
						got, err = c.Add(ctx, a, b)
						want = a + b
					case 1:
						got, err = c.Sub(ctx, a, b)
						want = a - b
					default:
						got, err = c.Mul(ctx, a, b)
						want = a * b
					}
					if err != nil || got != want {
						errs <- fmt.Errorf("client %d op %d: got %d, %v; want %d", i, j, got, err, want)
					}
				}()
			}
			inner.Wait()
			if err := c.Close(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	WaitFor(t, 5*time.Second, "client count back to 0", func() bool { return srv.ClientCount() == 0 })
	// The ring of closed sessions (256 by default) holds all 200.
	var served uint64
	closed := srv.Clients().Closed
	for _, ci := range closed {
		if ci.Reason != "client goodbye" {
			t.Errorf("client %d closed with %q", ci.ID, ci.Reason)
		}
		served += ci.Requests
	}
	if len(closed) != clients || served != clients*perClient {
		t.Errorf("%d closed sessions served %d requests, want %d and %d", len(closed), served, clients, clients*perClient)
	}
}

// TestHeartbeat: a client that never answers PINGs is closed within 2
// intervals plus the grace; one that answers stays.
func TestHeartbeat(t *testing.T) {
	const hb = 100 * time.Millisecond
	srv := Start(t, server.Config{Heartbeat: hb})
	alive, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "alive"})
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	dead, w := Hello(t, srv.Native, "silent")
	start := time.Now()
	// Read PINGs without answering them, until the server closes.
	var pings int
	for {
		_ = dead.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := dead.Rd.ReadFrame()
		if err != nil {
			break
		}
		if f.Type == wire.TypePing {
			pings++
		}
	}
	gone := time.Since(start)
	if pings < 1 {
		t.Errorf("the server sent %d PINGs before closing", pings)
	}
	// 2 intervals plus a grace of half an interval, plus scheduling slack.
	if gone < 2*hb || gone > 2*hb+hb/2+150*time.Millisecond {
		t.Errorf("closed after %v, want within [%v, %v]", gone, 2*hb, 2*hb+hb/2)
	}
	WaitFor(t, time.Second, "silent client removed", func() bool {
		for _, ci := range srv.Clients().Closed {
			if ci.ID == w.ClientID {
				return ci.Reason == "heartbeat timeout"
			}
		}
		return false
	})
	time.Sleep(5 * hb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := alive.Add(ctx, 1, 1); err != nil {
		t.Fatalf("the answering client was dropped: %v", err)
	}
	for _, ci := range srv.Clients().Clients {
		if ci.ID == alive.ID() && ci.HeartbeatRTT <= 0 {
			t.Errorf("no heartbeat RTT recorded: %+v", ci)
		}
	}
}

func TestHandshakeTimeout(t *testing.T) {
	srv := Start(t, server.Config{HandshakeTimeout: 100 * time.Millisecond})
	c := Dial(t, srv.Native)
	start := time.Now()
	c.ExpectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v", d)
	}
	if srv.ClientCount() != 0 {
		t.Error("a connection without HELLO was listed")
	}
}

func TestMaxConns(t *testing.T) {
	srv := Start(t, server.Config{MaxConns: 2})
	a, err := client.Dial(context.Background(), srv.Native, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := Dial(t, srv.Legacy)
	if got := b.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 1)); got != "2\n" {
		t.Fatal(got)
	}
	over := Dial(t, srv.Native)
	over.ExpectError(0, wire.CodeBusy)
	over.ExpectClosed()
	overLegacy := Dial(t, srv.Legacy)
	if got := overLegacy.ReadLine(); got != "ERROR BUSY\n" {
		t.Errorf("legacy over the limit: %q", got)
	}
	if sum, err := a.Add(context.Background(), 2, 2); err != nil || sum != 4 {
		t.Errorf("existing client: %d %v", sum, err)
	}
	if got := b.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 2, 2)); got != "4\n" {
		t.Errorf("existing legacy client: %q", got)
	}
	if st := srv.Stats(); st.Accepted != 2 || st.Rejected != 2 || st.Clients != 2 || len(st.Closed) != 0 {
		t.Errorf("stats %+v, want 2 accepted, 2 rejected, 2 connected, none closed", st)
	}
}

// TestConcurrencyAndBusy: slow requests run concurrently without holding
// back fast ones, and past MaxInFlight the answer is BUSY.
func TestConcurrencyAndBusy(t *testing.T) {
	srv := Start(t, server.Config{MaxInFlight: 2})
	c, _ := Hello(t, srv.Native, "busy")
	c.Send(request(1, "test.sleep", Ms(300)))
	c.Send(request(2, "test.sleep", Ms(300)))
	c.Send(request(3, "test.sleep", Ms(300)))
	c.Send(request(4, "math.add", Operands(1, 1)))
	c.ExpectError(3, wire.CodeBusy)
	if f := c.Read(); f.ID != 4 || f.Type != wire.TypeResponse {
		t.Fatalf("the fast request waited behind slow ones: %s", String(f))
	}
	got := map[uint32]bool{}
	for range 2 {
		f := c.Read()
		if f.Type != wire.TypeResponse || string(f.Body) != "slept" {
			t.Fatalf("got %s", String(f))
		}
		got[f.ID] = true
	}
	if !got[1] || !got[2] {
		t.Errorf("answers: %v", got)
	}
}

func TestDeadline(t *testing.T) {
	srv := Start(t, server.Config{})
	c, _ := Hello(t, srv.Native, "deadline")
	start := time.Now()
	c.Send(wire.AppendRequestDeadline(nil, 1, 50, "test.sleep", Ms(5000)))
	c.ExpectError(1, wire.CodeTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("TIMEOUT came after %v", d)
	}
	c.Send(wire.AppendRequestDeadline(nil, 2, 0, "math.add", Operands(1, 1)))
	c.ExpectError(2, wire.CodeTimeout)
	c.Send(wire.AppendRequestDeadline(nil, 3, 1000, "math.add", Operands(1, 1)))
	if f := c.Read(); f.Type != wire.TypeResponse || !bytes.Equal(f.Body, word(2)) {
		t.Errorf("got %s", String(f))
	}
}

// TestGracefulShutdown: every request the server read before shutdown is
// answered, GOODBYE is sent, later requests get SHUTTING_DOWN, and the
// server closes everyone.
func TestGracefulShutdown(t *testing.T) {
	srv := Start(t, server.Config{})
	c, _ := Hello(t, srv.Native, "drain")
	var burst []byte
	for i := uint32(1); i <= 20; i++ {
		burst = wire.AppendRequest(burst, i, "test.sleep", Ms(200))
	}
	c.Send(burst)
	leg := Dial(t, srv.Legacy)
	if got := leg.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 1)); got != "2\n" {
		t.Fatal(got)
	}
	srv.WaitInFlight(t, 20)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	answered := map[uint32]bool{}
	sawGoodbye := false
	for len(answered) < 20 {
		f := c.Read()
		switch f.Type {
		case wire.TypeGoodbye:
			sawGoodbye = true
			// Crossing the GOODBYE: answered SHUTTING_DOWN, not lost.
			c.Send(request(100, "math.add", Operands(1, 1)))
		case wire.TypeResponse:
			if string(f.Body) != "slept" {
				t.Fatalf("got %s", String(f))
			}
			answered[f.ID] = true
		case wire.TypeError:
			we, _ := wire.ParseError(f.Body)
			if f.ID != 100 || we.Code != wire.CodeShuttingDown {
				t.Fatalf("got %s", String(f))
			}
		}
	}
	if !sawGoodbye {
		t.Error("no GOODBYE before the responses")
	}
	c.ExpectClosed()
	leg.ExpectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := srv.ClientCount(); n != 0 {
		t.Errorf("%d clients left", n)
	}
	for _, ci := range srv.Clients().Closed {
		if ci.Reason != "server shutdown" {
			t.Errorf("client %d closed with %q", ci.ID, ci.Reason)
		}
	}
}

// TestClientList checks the rows of sys.clients (allowed: the caller is on
// loopback) and that a kicked client leaves the list with its reason.
func TestClientList(t *testing.T) {
	srv := Start(t, server.Config{})
	c, w := Hello(t, srv.Native, "lister")
	leg := Dial(t, srv.Legacy)
	leg.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 1))
	// Counters are updated just after the write that carried the reply, so
	// they may trail what the client has read by a moment.
	WaitFor(t, 5*time.Second, "legacy counters settled", func() bool {
		for _, ci := range srv.Clients().Clients {
			if ci.Door == "legacy" {
				return ci.BytesOut == 2 && ci.InFlight == 0
			}
		}
		return false
	})
	c.Send(request(1, "sys.clients", nil))
	f := c.Read()
	var snap status.Snapshot
	if err := json.Unmarshal(f.Body, &snap); err != nil {
		t.Fatalf("%v: %s", err, String(f))
	}
	if len(snap.Clients) != 2 {
		t.Fatalf("clients: %+v", snap.Clients)
	}
	me, other := snap.Clients[0], snap.Clients[1]
	if me.ID != w.ClientID || me.Door != "native" || me.Name != "lister" || me.Requests != 1 || !strings.HasPrefix(me.Remote, "127.0.0.1:") {
		t.Errorf("native row: %+v", me)
	}
	if other.Door != "legacy" || other.Requests != 1 || other.BytesIn != 12 || other.BytesOut != 2 || other.InFlight != 0 {
		t.Errorf("legacy row: %+v", other)
	}
	if st := srv.Stats(); st.Clients != 2 || !maps.Equal(st.Doors, map[string]int{"native": 1, "legacy": 1}) {
		t.Errorf("stats before the kick: %d clients, by door %v", st.Clients, st.Doors)
	}
	if !srv.Kick(other.ID, "test") {
		t.Fatal("kick")
	}
	leg.ExpectClosed()
	WaitFor(t, 5*time.Second, "kicked client listed as closed", func() bool {
		cl := srv.Clients().Closed
		return len(cl) == 1 && cl[0].Reason == "kicked" && srv.ClientCount() == 1
	})
	// The close is counted just after the session leaves the list.
	WaitFor(t, 5*time.Second, "the kick counted", func() bool { return srv.Stats().Closed["kicked"] == 1 })
	if st := srv.Stats(); st.Closed["kicked"] != 1 || st.Clients != 1 || !maps.Equal(st.Doors, map[string]int{"native": 1}) {
		t.Errorf("stats %+v", st)
	}
	if srv.Kick(99999, "nobody") {
		t.Error("kicked a client that does not exist")
	}
}

// TestSlowConsumer: a client that pipelines without reading is closed once
// its pending output passes the bound; others are unaffected.
func TestSlowConsumer(t *testing.T) {
	srv := Start(t, server.Config{MaxFrame: 1 << 16, MaxPending: 1 << 18, WriteTimeout: 500 * time.Millisecond})
	other, err := client.Dial(context.Background(), srv.Native, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, _ := Hello(t, srv.Native, "never-reads")
	payload := make([]byte, 60000)
	var burst []byte
	for i := range 5000 {
		burst = wire.AppendRequest(burst[:0], uint32(i+1), "sys.echo", payload)
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(burst); err != nil {
			break // the server closed us: expected
		}
	}
	WaitFor(t, 10*time.Second, "slow consumer closed", func() bool {
		for _, ci := range srv.Clients().Closed {
			if ci.Name == "never-reads" {
				return ci.Reason == "slow consumer"
			}
		}
		return false
	})
	if sum, err := other.Add(context.Background(), 20, 22); err != nil || sum != 42 {
		t.Errorf("other client: %d %v", sum, err)
	}
}

// TestShutdownWithoutClients: Shutdown returns at once, and the server
// accepts nothing afterwards.
func TestShutdownWithoutClients(t *testing.T) {
	srv := Start(t, server.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Dial(ctx, srv.Native, nil); err == nil {
		t.Error("dial succeeded after shutdown")
	}
	if !errors.Is(srv.ServeNative(mustListen(t)), server.ErrServerClosed) {
		t.Error("Serve after Shutdown should return ErrServerClosed")
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestGoodbyeAfterAnswers: a kick that comes while the reader works
// through a burst says GOODBYE after the answers the reader computed
// before it (then the burst's later requests get SHUTTING_DOWN), not in
// the middle of them.
func TestGoodbyeAfterAnswers(t *testing.T) {
	// Set once the server runs, read by the method: a request reaches the
	// method only after the test sent it, but the race detector does not
	// see that order through a loop's raw socket reads.
	var started atomic.Pointer[Server]
	kickSelf := service.Method{Name: "test.kickself", Inline: true,
		Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			started.Load().Kick(req.Caller.ID, "from within")
			return append(dst, "kicked"...), nil
		}}
	srv := StartWith(t, FastConfig(), Options{Catalog: func(*server.Server) (catalog.Options, error) {
		return catalog.Options{Extra: []service.Method{kickSelf}}, nil
	}})
	started.Store(srv)
	c, _ := Hello(t, srv.Native, "self-kicker")
	var burst []byte
	burst = wire.AppendRequest(burst, 1, "math.add", Operands(1, 2))
	burst = wire.AppendRequest(burst, 2, "test.kickself", nil)
	burst = wire.AppendRequest(burst, 3, "math.add", Operands(3, 4))
	c.Send(burst)
	var got []string
	for range 4 {
		f := c.Read()
		got = append(got, fmt.Sprintf("%s %d", f.Type, f.ID))
	}
	want := []string{"RESPONSE 1", "RESPONSE 2", "ERROR 3", "GOODBYE 0"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("frames %v, want %v", got, want)
	}
}

// TestLastWordsToAHalfClosedPeer: a peer that sends part of a frame and
// closes its side gets ERROR BAD_FRAME before the connection ends, every
// time. Its close ends the server's discard at once, and the close that
// followed could drop the last words still waiting for the writer's
// goroutine (worse on the loop core, whose writer first opens a waiting
// connection on the socket).
func TestLastWordsToAHalfClosedPeer(t *testing.T) {
	srv := Start(t, server.Config{})
	for i := range 40 {
		c, _ := Hello(t, srv.Native, "cut")
		c.Send(request(1, "math.add", Operands(1, 2))[:20])
		_ = c.Conn.(*net.TCPConn).CloseWrite()
		f := c.Read()
		we, _ := wire.ParseError(f.Body)
		if f.Type != wire.TypeError || we.Code != wire.CodeBadFrame {
			t.Fatalf("connection %d: %s, want ERROR BAD_FRAME", i, String(f))
		}
		c.Close()
	}
}

// TestRowsOfInlineRequests: a pipelined burst of inline requests is timed
// as rows of one method and code (one clock reading a row, not one a
// request), and every request is still counted under its method and
// code, once, with a duration: math.add, math.add, math.div by zero,
// math.add, math.mul, math.add in one write.
func TestRowsOfInlineRequests(t *testing.T) {
	srv := Start(t, FastConfig())
	c, _ := Hello(t, srv.Native, "rows")
	var burst []byte
	for i, call := range []struct {
		method string
		a, b   int64
	}{{"math.add", 1, 2}, {"math.add", 3, 4}, {"math.div", 1, 0}, {"math.add", 5, 6}, {"math.mul", 2, 3}, {"math.add", 7, 8}} {
		burst = wire.AppendRequest(burst, uint32(i+1), call.method, Operands(call.a, call.b))
	}
	c.Send(burst)
	for range 6 {
		c.Read()
	}
	want := map[string]map[string]uint64{"math.add": {"OK": 4}, "math.div": {"DIVISION_BY_ZERO": 1}, "math.mul": {"OK": 1}}
	WaitFor(t, 2*time.Second, "every request counted", func() bool {
		got := map[string]map[string]uint64{}
		for _, m := range srv.Metrics().Methods {
			if want[m.Name] != nil {
				got[m.Name] = m.Codes
				var n uint64
				for _, c := range m.Duration.Counts {
					n += c
				}
				if n != m.Duration.Count || n != m.Codes["OK"]+m.Codes["DIVISION_BY_ZERO"] {
					return false
				}
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
}

// TestPipelinedBehindBlockedOutput: a client that pipelines far more than
// it reads has its output blocked in the middle of a read of its
// requests (sys.describe's long answers pass the burst's flush point
// long before the read is used up); the requests of that read not yet
// served wait, and are served right, while other clients of the same
// event loop are read into the loop's buffer (the native door reads its
// frames there, and keeps what it has not served when the loop leaves
// the connection).
func TestPipelinedBehindBlockedOutput(t *testing.T) {
	srv := Start(t, server.Config{Loops: 1})
	a, _ := Hello(t, srv.Native, "pipeliner")
	a.Send(request(1, "sys.describe", nil))
	described := bytes.Clone(a.Read().Body)
	payload := func(id uint32) []byte {
		p := bytes.Repeat([]byte{byte(id)}, 100)
		binary.BigEndian.PutUint32(p, id)
		return p
	}
	const n = 5000 // answers of many MB: more than the socket buffers hold
	var all []byte
	for id := uint32(2); id < 2*n; id += 2 {
		all = wire.AppendRequest(all, id, "sys.describe", nil)
		all = wire.AppendRequest(all, id+1, "sys.echo", payload(id+1))
	}
	wrote := make(chan error, 1)
	go func() { _, err := a.Write(all); wrote <- err }()
	time.Sleep(100 * time.Millisecond) // a's output blocks within its first few MB

	// Another client of the same loop meanwhile.
	b, _ := Hello(t, srv.Native, "other")
	other := bytes.Repeat([]byte{0xee}, 1000)
	for range 50 {
		var burst []byte
		for id := uint32(1); id <= 100; id++ {
			burst = wire.AppendRequest(burst, id, "sys.echo", other)
		}
		b.Send(burst)
		for id := uint32(1); id <= 100; id++ {
			if f := b.Read(); f.ID != id || !bytes.Equal(f.Body, other) {
				t.Fatalf("other client: got %s, want the echo of request %d", String(f), id)
			}
		}
	}

	for id := uint32(2); id < 2*n; id += 2 {
		if f := a.Read(); f.Type != wire.TypeResponse || f.ID != id || !bytes.Equal(f.Body, described) {
			t.Fatalf("pipeliner: got %v id %d (%d bytes), want sys.describe's answer to request %d", f.Type, f.ID, len(f.Body), id)
		}
		if f := a.Read(); f.Type != wire.TypeResponse || f.ID != id+1 || !bytes.Equal(f.Body, payload(id+1)) {
			t.Fatalf("pipeliner: got %s, want the echo of request %d", String(f), id+1)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
