package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/wire"
)

func dial(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), addr, &client.Options{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTypedHelpersAndErrors(t *testing.T) {
	srv := Start(t, server.Config{})
	c := dial(t, srv.Native)
	ctx := context.Background()
	if v, err := c.Add(ctx, 2, 3); v != 5 || err != nil {
		t.Errorf("Add = %d, %v", v, err)
	}
	if v, err := c.Sub(ctx, 2, 3); v != -1 || err != nil {
		t.Errorf("Sub = %d, %v", v, err)
	}
	if v, err := c.Mul(ctx, -4, 5); v != -20 || err != nil {
		t.Errorf("Mul = %d, %v", v, err)
	}
	if v, err := c.Div(ctx, 7, 2); v != 3.5 || err != nil {
		t.Errorf("Div = %v, %v", v, err)
	}
	_, err := c.Div(ctx, 1, 0)
	var we *wire.Error
	if !errors.Is(err, wire.CodeDivisionByZero) || !errors.As(err, &we) || we.Code != wire.CodeDivisionByZero {
		t.Errorf("Div by zero: %v", err)
	}
	if _, err := c.Add(ctx, 1<<62, 1<<62); !errors.Is(err, wire.CodeOverflow) {
		t.Errorf("overflow: %v", err)
	}
	if _, err := c.Call(ctx, "no.such", nil); !errors.Is(err, wire.CodeUnknownMethod) {
		t.Errorf("unknown method: %v", err)
	}
	if out, err := c.Echo(ctx, []byte("hi")); string(out) != "hi" || err != nil {
		t.Errorf("Echo = %q, %v", out, err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.Clients != 1 || len(info.Methods) == 0 {
		t.Errorf("Info = %+v, %v", info, err)
	}
	if c.ID() == 0 || c.Welcome().HeartbeatMS != 5000 {
		t.Errorf("welcome %+v", c.Welcome())
	}
	if _, err := c.Call(ctx, "bad method", nil); err == nil {
		t.Error("a method with a space was sent")
	}
}

func TestContextCancelLeavesClientUsable(t *testing.T) {
	srv := Start(t, server.Config{})
	c := dial(t, srv.Native)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := c.Call(ctx, "test.sleep", Ms(5000)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancel took %v", d)
	}
	if v, err := c.Add(context.Background(), 1, 1); v != 2 || err != nil {
		t.Errorf("after cancel: %d, %v", v, err)
	}
	// An expired context sends nothing.
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := c.Add(expired, 1, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired ctx: %v", err)
	}
}

// TestServerEnforcesDeadline: the deadline of the caller's context travels
// with the request, and the server stops working on it when it passes. The
// caller may see either its own context expire or the server's TIMEOUT
// (both fire at 200 ms); what shows the server's side is that the handler,
// which would otherwise sleep 5 s, is gone from the client list at once.
func TestServerEnforcesDeadline(t *testing.T) {
	srv := Start(t, server.Config{})
	c := dial(t, srv.Native)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Call(ctx, "test.sleep", Ms(5000))
	if !errors.Is(err, wire.CodeTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	WaitFor(t, time.Second, "the server to stop the expired request", func() bool {
		cl := srv.Clients().Clients
		return len(cl) == 1 && cl[0].InFlight == 0
	})
}

func TestCloseWaitsForInFlight(t *testing.T) {
	srv := Start(t, server.Config{})
	c, err := client.Dial(context.Background(), srv.Native, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.Call(context.Background(), "test.sleep", Ms(200))
			if err == nil && string(out) != "slept" {
				err = errors.New("wrong answer " + string(out))
			}
			results <- err
		}()
	}
	srv.WaitInFlight(t, 10)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("in-flight call: %v", err)
		}
	}
	if _, err := c.Add(context.Background(), 1, 1); !errors.Is(err, client.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	WaitFor(t, 5*time.Second, "session closed as goodbye", func() bool {
		cl := srv.Clients().Closed
		return len(cl) == 1 && cl[0].Reason == "client goodbye"
	})
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServerShutdownReachesClient(t *testing.T) {
	srv := Start(t, server.Config{})
	c := dial(t, srv.Native)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not notice the server going away")
	}
	if _, err := c.Add(ctx, 1, 1); !errors.Is(err, client.ErrClosed) {
		t.Errorf("after shutdown: %v", err)
	}
}

// rawServer accepts one connection, answers HELLO with the given WELCOME,
// and hands the connection to the test.
func rawServer(t *testing.T, welcome wire.Welcome) (addr string, conns <-chan *Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan *Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		c := &Conn{Conn: nc, Rd: wire.NewReader(nc, 0)}
		if f, err := c.Rd.ReadFrame(); err != nil || f.Type != wire.TypeHello {
			nc.Close()
			return
		}
		b, _ := wire.AppendJSON(nil, wire.TypeWelcome, welcome)
		nc.Write(b)
		ch <- c
	}()
	t.Cleanup(func() {
		select {
		case c := <-ch:
			c.Close()
		default:
		}
	})
	return ln.Addr().String(), ch
}

func readFrame(t *testing.T, c *Conn) wire.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := c.Rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestWireBehaviour checks bytes the client sends: the DEADLINE flag, PONG
// for PING, GOODBYE on Close; and that events reach OnEvent.
func TestWireBehaviour(t *testing.T) {
	addr, conns := rawServer(t, wire.Welcome{ClientID: 7, HeartbeatMS: 60000, MaxFrame: 1 << 20})
	events := make(chan string, 1)
	c, err := client.Dial(context.Background(), addr, &client.Options{OnEvent: func(topic string, p []byte) { events <- topic + ":" + string(p) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := <-conns
	if c.ID() != 7 {
		t.Errorf("id %d", c.ID())
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go c.Add(ctx, 1, 2)
	f := readFrame(t, srv)
	req, err := wire.ParseRequest(f)
	if err != nil || !req.HasDeadline || req.Deadline < 900 || req.Deadline > 1000 || string(req.Method) != "math.add" {
		t.Errorf("request %+v, %v: want DEADLINE of about 1000 ms", req, err)
	}
	srv.Write(wire.AppendFrame(nil, wire.TypePing, 0, 9, []byte("beat")))
	if f := readFrame(t, srv); f.Type != wire.TypePong || f.ID != 9 || string(f.Body) != "beat" {
		t.Errorf("got %v %d %q, want PONG 9 beat", f.Type, f.ID, f.Body)
	}
	srv.Write(wire.AppendEvent(nil, "news", []byte("hi")))
	select {
	case ev := <-events:
		if ev != "news:hi" {
			t.Errorf("event %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no event")
	}
	srv.Write(wire.AppendResponse(nil, f.ID, make([]byte, 8)))
	go c.Close()
	if f := readFrame(t, srv); f.Type != wire.TypeGoodbye {
		t.Errorf("got %v, want GOODBYE", f.Type)
	}
}

// TestDeadServer: a server that goes silent is noticed within two
// heartbeat intervals plus a grace, and pending calls fail.
func TestDeadServer(t *testing.T) {
	addr, conns := rawServer(t, wire.Welcome{ClientID: 1, HeartbeatMS: 50, MaxFrame: 1 << 20})
	c, err := client.Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-conns
	start := time.Now()
	_, err = c.Add(context.Background(), 1, 1) // never answered
	if !errors.Is(err, client.ErrClosed) || !errors.Is(err, client.ErrServerDead) {
		t.Fatalf("got %v, want ErrClosed wrapping ErrServerDead", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
		t.Errorf("noticed after %v, want about 125 ms", d)
	}
}

func TestDialErrors(t *testing.T) {
	srv := Start(t, server.Config{MaxConns: 1})
	dial(t, srv.Native)
	_, err := client.Dial(context.Background(), srv.Native, nil)
	if !errors.Is(err, wire.CodeBusy) {
		t.Errorf("over the limit: %v", err)
	}
	// A listener that never answers HELLO: the dial context bounds the wait.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := client.Dial(ctx, ln.Addr().String(), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent server: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dial took %v", d)
	}
}

// TestWrongDoor: a native client pointed at an HTTP or legacy port is told
// which protocol answered, instead of a FRAME_TOO_LARGE for a "length"
// that is the text "HTTP".
func TestWrongDoor(t *testing.T) {
	for _, tt := range []struct {
		answer, want string
	}{
		{"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", "HTTP"},
		{"ERROR BAD_FRAME\n", "legacy"},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 512)
			_, _ = c.Read(buf) // the HELLO
			_, _ = c.Write([]byte(tt.answer))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = client.Dial(ctx, ln.Addr().String(), nil)
		cancel()
		ln.Close()
		if !errors.Is(err, client.ErrWrongDoor) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "native door") {
			t.Errorf("answer %q: %v", tt.answer, err)
		}
	}
}
