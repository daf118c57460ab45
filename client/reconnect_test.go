package client_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// ledger is a non-idempotent method, test.record: it records each call's
// 8-byte key, so the test can see what ran and how often.
type ledger struct {
	mu   sync.Mutex
	runs map[uint64]int
}

func (l *ledger) method() service.Method {
	return service.Method{Name: "test.record", Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
		l.mu.Lock()
		l.runs[binary.BigEndian.Uint64(req.Payload)]++
		l.mu.Unlock()
		return dst, nil
	}}
}

// startAt runs a server with math and test.record on addr ("127.0.0.1:0"
// for any port) and returns it with its address.
func startAt(t *testing.T, addr string, l *ledger) (*server.Server, string) {
	t.Helper()
	reg := service.NewRegistry()
	srv, err := server.New(server.Config{Heartbeat: 200 * time.Millisecond, Linger: 100 * time.Millisecond}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(reg.Register(calc.Methods()...), reg.Register(l.method())); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for range 50 { // the old server's port may take a moment to be free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeNative(ln) }()
	return srv, ln.Addr().String()
}

func stop(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// TestReconnectAcrossRestart: the server is stopped, once draining and
// once at once (calls in flight lost), and started again on the same
// address each time, while 8 goroutines call math.add and
// test.record through one Reconnecting client. Every math.add succeeds
// with the right sum (retried where needed); every test.record either
// succeeded, and ran exactly once, or returned an error, and ran at most
// once: nothing is lost silently and nothing runs twice.
func TestReconnectAcrossRestart(t *testing.T) {
	l := &ledger{runs: map[uint64]int{}}
	srv, addr := startAt(t, "127.0.0.1:0", l)
	r, err := client.DialReconnecting(context.Background(), addr, &client.Options{Name: "survivor"},
		&client.ReconnectOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var adds atomic.Int64
	var mu sync.Mutex
	recorded := map[uint64]bool{} // key -> the call returned success
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := int64(0); ctx.Err() == nil; k++ {
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := r.Add(cctx, int64(w), k)
				if err != nil || got != int64(w)+k {
					t.Errorf("worker %d: add(%d, %d) = %d, %v", w, w, k, got, err)
					ccancel()
					return
				}
				adds.Add(1)
				key := uint64(w)<<32 | uint64(k)
				_, err = r.Call(cctx, "test.record", binary.BigEndian.AppendUint64(nil, key))
				ccancel()
				mu.Lock()
				recorded[key] = err == nil
				mu.Unlock()
				if err != nil && !errors.Is(err, client.ErrClosed) && !errors.Is(err, client.ErrServerDead) {
					t.Errorf("test.record: unexpected error %v", err)
				}
			}
		})
	}
	flowing := func() {
		before := adds.Load()
		nexotest.WaitFor(t, 10*time.Second, "calls flowing", func() bool { return adds.Load() > before+1000 })
	}
	flowing()
	stop(t, srv) // graceful: GOODBYE, in-flight calls answered, new ones SHUTTING_DOWN
	time.Sleep(200 * time.Millisecond)
	srv2, _ := startAt(t, addr, l)
	flowing()
	hard, hardCancel := context.WithCancel(context.Background())
	hardCancel()
	_ = srv2.Shutdown(hard) // hard: every connection closed at once, calls in flight lost
	time.Sleep(200 * time.Millisecond)
	srv3, _ := startAt(t, addr, l)
	defer stop(t, srv3)
	flowing()
	cancel()
	wg.Wait()

	if r.Reconnects() < 2 {
		t.Errorf("reconnects = %d", r.Reconnects())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var failed int
	for key, ok := range recorded {
		switch runs := l.runs[key]; {
		case ok && runs != 1:
			t.Errorf("test.record %x succeeded but ran %d times", key, runs)
		case !ok && runs > 1:
			t.Errorf("test.record %x failed and ran %d times", key, runs)
		case !ok:
			failed++
		}
	}
	for key, runs := range l.runs {
		if _, ok := recorded[key]; !ok || runs > 1 {
			t.Errorf("test.record %x ran %d times, seen by the caller: %v", key, runs, ok)
		}
	}
	t.Logf("%d adds, %d records (%d returned an error), %d reconnects, %d retries",
		adds.Load(), len(recorded), failed, r.Reconnects(), r.Retries())
}

// helloConn is a connection accepted by helloListener, its HELLO read.
type helloConn struct {
	*net.TCPConn
	rd *wire.Reader
}

// helloListener accepts connections on a loopback port, reads each one's
// HELLO and hands it over unanswered: the test decides when (and whether)
// its dial completes by writing WELCOME itself.
func helloListener(t *testing.T) (addr string, conns <-chan helloConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan helloConn)
	done := make(chan struct{})
	var (
		accepting sync.WaitGroup
		mu        sync.Mutex
		all       []net.Conn // guarded by mu
		ended     bool       // guarded by mu: the test is over
	)
	t.Cleanup(func() {
		ln.Close()
		close(done)
		mu.Lock()
		ended = true
		for _, c := range all {
			c.Close() // also ends a ReadFrame waiting for HELLO
		}
		mu.Unlock()
		accepting.Wait()
	})
	accepting.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if ended {
				mu.Unlock()
				nc.Close()
				return
			}
			all = append(all, nc)
			mu.Unlock()
			c := helloConn{nc.(*net.TCPConn), wire.NewReader(nc, 0)}
			f, err := c.rd.ReadFrame()
			select {
			case <-done:
				return
			default:
			}
			if err != nil || f.Type != wire.TypeHello {
				t.Errorf("first frame from the client: %v (err %v), want HELLO", f.Type, err)
				return
			}
			select {
			case ch <- c:
			case <-done:
				return
			}
		}
	})
	return ln.Addr().String(), ch
}

// accept returns the next connection from helloListener.
func accept(t *testing.T, conns <-chan helloConn) helloConn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection from the client")
		return helloConn{}
	}
}

// TestCloseDuringDial: Close called while a Reconnecting client is
// dialling a replacement connection (the server has its HELLO but has not
// answered WELCOME yet) must close that connection once the dial
// completes: the server sees GOODBYE and then the socket closing, never a
// request, and the call that started the dial returns ErrClosed. Before
// the fix the new connection became current after Close, carried the call
// and stayed open with nobody left to close it.
func TestCloseDuringDial(t *testing.T) {
	addr, conns := helloListener(t)
	// No heartbeat: this server never sends PING.
	welcome, err := wire.AppendJSON(nil, wire.TypeWelcome, wire.Welcome{ClientID: 1, MaxFrame: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type dialResult struct {
		r   *client.Reconnecting
		err error
	}
	dialled := make(chan dialResult, 1)
	go func() {
		r, err := client.DialReconnecting(ctx, addr, nil, &client.ReconnectOptions{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
		dialled <- dialResult{r, err}
	}()
	first := accept(t, conns)
	if _, err := first.Write(welcome); err != nil {
		t.Fatal(err)
	}
	d := <-dialled
	if d.err != nil {
		t.Fatal(d.err)
	}
	r := d.r

	// The first connection dies; the next call dials a replacement, and
	// that dial waits for WELCOME.
	first.Close()
	called := make(chan error, 1)
	go func() {
		_, err := r.Call(ctx, "sys.echo", []byte("hi")) // idempotent: retried on the next connection
		called <- err
	}()
	second := accept(t, conns)
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := second.Write(welcome); err != nil { // the dial completes after Close
		t.Fatal(err)
	}

	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := second.rd.ReadFrame()
	if err != nil || f.Type != wire.TypeGoodbye {
		t.Fatalf("the connection dialled during Close carried %v (err %v), want GOODBYE", f.Type, err)
	}
	// Answer GOODBYE as a server does, by closing our side, so the
	// client's Close need not wait out its linger; the client must then
	// close its socket.
	_ = second.CloseWrite()
	if f, err := second.rd.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after GOODBYE the client sent %v (err %v), want the connection closed (EOF)", f.Type, err)
	}
	if err := <-called; !errors.Is(err, client.ErrClosed) {
		t.Errorf("the call that dialled returned %v, want ErrClosed", err)
	}
	if _, err := r.Call(ctx, "sys.echo", nil); !errors.Is(err, client.ErrClosed) {
		t.Errorf("a call after Close returned %v, want ErrClosed", err)
	}
}
