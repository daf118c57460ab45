package server

import (
	"container/heap"
	"context"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// serveNative runs a server with cfg and methods ms on a native listener
// of its own, shut down when the test ends.
func serveNative(t *testing.T, cfg Config, ms ...service.Method) (*Server, net.Listener) {
	t.Helper()
	reg := service.NewRegistry()
	if err := reg.Register(ms...); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeNative(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
	})
	return s, ln
}

// TestLoopLingerEnds: a drained connection on a loop whose peer never
// closes ends when the linger is over, by the loop's own timer. The
// socket's read deadline says the same, but the runtime may mark it
// passed after the loop's timer has fired; the loop then read nothing,
// set no other timer, and the connection stayed until its peer closed
// (TestMetrics saw a kicked client stay over 2 s). Here the deadline is
// taken away altogether: only the loop's timer can end the connection.
func TestLoopLingerEnds(t *testing.T) {
	s, ln := serveNative(t, Config{Linger: 200 * time.Millisecond, Core: CoreLoop})

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // never before the end: the peer does not close
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "stays"})
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	f, err := wire.NewReader(c, 0).ReadFrame()
	if err != nil || f.Type != wire.TypeWelcome {
		t.Fatalf("welcome: %v %v", f.Type, err)
	}
	if s.Core() != CoreLoop {
		t.Skip("no event loops here")
	}
	var sess *session
	for _, live := range s.table.appendLive(nil) {
		sess = live
	}
	if !s.Kick(sess.caller.ID, "test") {
		t.Fatal("kick refused")
	}
	deadline := time.Now().Add(time.Second)
	for !sess.finished.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the drain did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	_ = sess.conn.SetReadDeadline(time.Time{})
	deadline = time.Now().Add(3 * time.Second)
	for s.table.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection outlived its linger by over 2.8 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := closeReason(sess.reason.Load()); got != reasonKicked {
		t.Errorf("closed as %v, want kicked", got)
	}
}

// TestHandshakeOnLoop: on the loop core a native connection's handshake
// holds no goroutine: connections that sent part of a HELLO wait in a
// loop, and the loop's timer ends them at the handshake timeout, counted
// as timed out. A HELLO that arrives in two parts gets its WELCOME.
func TestHandshakeOnLoop(t *testing.T) {
	s, ln := serveNative(t, Config{HandshakeTimeout: 700 * time.Millisecond, Core: CoreLoop})
	handshaking := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.handshaking)
	}
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "slow"})
	const n = 100
	before := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(hello[:5]); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	start := time.Now()
	for handshaking() < n {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%d handshakes under way, want %d", handshaking(), n)
		}
		time.Sleep(time.Millisecond)
	}
	if s.Core() != CoreLoop {
		t.Skip("no event loops here")
	}
	time.Sleep(50 * time.Millisecond) // a handshake goroutine would be waiting by now
	if extra := runtime.NumGoroutine() - before; extra >= n/2 {
		t.Errorf("%d goroutines more during %d handshakes; want next to none", extra, n)
	}

	// A HELLO in two parts, read in two wake-ups, is welcomed.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(hello[:7])
	time.Sleep(20 * time.Millisecond)
	_, _ = c.Write(hello[7:])
	if f, err := wire.NewReader(c, 0).ReadFrame(); err != nil || f.Type != wire.TypeWelcome {
		t.Fatalf("welcome: %v %v", f.Type, err)
	}

	// The others end at the timeout, closed by the server.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("connection %d: read something; want the close", i)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d still open 5 s after its handshake timeout", i)
		}
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Errorf("closed after %v, before the handshake timeout", took)
	}
	if got := s.metrics.handshakeFailed[failTimeout].Load(); got != n {
		t.Errorf("%d handshakes counted as timed out, want %d", got, n)
	}
	if handshaking() != 0 {
		t.Errorf("%d handshakes still tracked", handshaking())
	}
}

// TestTimersLetGo: once a storm of timers (a crowd of handshakes) has
// passed, a loop's heap lets its array go instead of keeping room for
// them all.
func TestTimersLetGo(t *testing.T) {
	var h timerHeap
	now := time.Now()
	for i := range 10 * keepTimers {
		heap.Push(&h, timer{at: now.Add(time.Duration(i%97) * time.Millisecond)})
	}
	last := time.Time{}
	for h.Len() > 0 {
		at := heap.Pop(&h).(timer).at
		if at.Before(last) {
			t.Fatalf("timers out of order: %v after %v", at, last)
		}
		last = at
	}
	if cap(h) > keepTimers {
		t.Errorf("an empty heap keeps room for %d timers", cap(h))
	}
}

// TestOwnConnAddrs: a connection a loop owns tells the addresses of the
// one it was accepted as (the peer's kept as a value, its own asked of
// the socket), and remoteOf prints the peer's as net.TCPAddr does, over
// IPv4, IPv6, and IPv4 on a dual-stack listener (an IPv4-mapped address).
func TestOwnConnAddrs(t *testing.T) {
	for _, tc := range []struct{ listen, dial string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
		{"[::]:0", "127.0.0.1"},
	} {
		ln, err := net.Listen("tcp", tc.listen)
		if err != nil {
			t.Logf("%s: %v", tc.listen, err) // no IPv6 here
			continue
		}
		defer ln.Close()
		c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		local, remote := a.LocalAddr().String(), a.RemoteAddr().String()
		fc := ownConn(a)
		if fc == nil {
			t.Skip("the descriptor cannot be taken here")
		}
		defer func() { fc.release(); _ = fc.Close() }()
		text, loopback := remoteOf(fc)
		if fc.LocalAddr().String() != local || fc.RemoteAddr().String() != remote || text != remote || !loopback {
			t.Errorf("%s: owned: %v %v, remoteOf %s %v; accepted as %s %s", tc.listen, fc.LocalAddr(), fc.RemoteAddr(), text, loopback, local, remote)
		}
	}
}

// TestLoopsLetGoForOthers: while requests run on other goroutines (here
// a method that is not inline), a loop with nothing to read waits in the
// runtime's poller ("IO wait"), as the poller of parked connections
// always does, and not in epoll_wait ("syscall"): a thread blocked in a
// system call keeps its P until the runtime's monitor takes it back, 20
// µs to 10 ms later, and the goroutines that answer waited meanwhile (a
// gateway forwarding to NATS served a quarter less at c=8). While the loop is
// all the work there is, it blocks in epoll_wait, the quickest wake-up.
func TestLoopsLetGoForOthers(t *testing.T) {
	release := make(chan struct{}) // a test that fails first ends test.hold by its context
	s, ln := serveNative(t, Config{Core: CoreLoop, Loops: 1, HandshakeTimeout: 300 * time.Millisecond},
		service.Method{Name: "test.echo", Inline: true, Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			return append(dst, req.Payload...), nil
		}},
		service.Method{Name: "test.hold", Handler: func(ctx context.Context, _ service.Request, dst []byte) ([]byte, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return dst, nil
		}})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := wire.NewReader(c, 0)
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "waits"})
	if _, err := c.Write(wire.AppendRequest(hello, 1, "test.echo", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	for range 2 { // WELCOME, then the echo
		if _, err := rd.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	if s.Core() != CoreLoop {
		t.Skip("no event loops here")
	}
	// states returns how the loop and the poller are: "IO wait" in the
	// runtime's poller, "syscall" in epoll_wait, or running.
	states := func() (loop, poller string) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			_, state, _ := strings.Cut(g, "[")
			state, _, _ = strings.Cut(state, "]")
			state, _, _ = strings.Cut(state, ",")
			switch {
			case strings.Contains(g, "server.(*loop).run("):
				loop = state
			case strings.Contains(g, "server.(*poller).run("):
				poller = state
			}
		}
		return loop, poller
	}
	// expect waits for the loop and the poller to wait as said, in three
	// looks in a row: a moment of running, or of epoll_wait looking
	// without waiting, comes between.
	expect := func(when, loopWait, pollerWait string) {
		t.Helper()
		var loop, poller string
		for seen, deadline := 0, time.Now().Add(2*time.Second); seen < 3; time.Sleep(time.Millisecond) {
			if loop, poller = states(); loop == loopWait && poller == pollerWait {
				seen++
			} else {
				seen = 0
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the loop is %q and the poller %q; want %q and %q", when, loop, poller, loopWait, pollerWait)
			}
		}
	}
	expect("with nothing running", "syscall", "IO wait")
	if _, err := c.Write(wire.AppendRequest(nil, 2, "test.hold", nil)); err != nil {
		t.Fatal(err)
	}
	expect("with test.hold running", "IO wait", "IO wait")

	// The parked loop still keeps its timers: a connection that never
	// says HELLO is closed at its handshake timeout.
	quiet, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	_ = quiet.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, quiet); err != nil {
		t.Fatalf("a connection without HELLO beside a parked loop: %v, want it closed at its handshake timeout", err)
	}

	close(release)
	if _, err := rd.ReadFrame(); err != nil { // test.hold's answer
		t.Fatal(err)
	}
	elsewhere := &s.loops.Load().all[0].elsewhere
	for deadline := time.Now().Add(2 * time.Second); elsewhere.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // the answer goes out a moment before the count
			t.Fatalf("requests running elsewhere: %d after test.hold answered, want 0", elsewhere.Load())
		}
	}
	// A parked loop looks at the count again at its next wake-up.
	if _, err := c.Write(wire.AppendRequest(nil, 3, "test.echo", []byte("y"))); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	expect("once test.hold has answered", "syscall", "IO wait")
}

// TestParkedLoopLooksAgain: a loop parked while a request ran elsewhere
// looks again at its count within two seconds, even when nothing wakes
// it: here the request's connection closed while it ran, so its answer,
// the last of the loop's requests, goes nowhere. It then blocks, and
// the runtime's watch ends, closing the duplicate of its descriptor. A
// loop parked with no deadline stayed so until its next event, keeping
// the descriptor (found by CI's TestCatalogue, whose descriptor count
// did not come back after an attack of held requests).
func TestParkedLoopLooksAgain(t *testing.T) {
	release := make(chan struct{})
	s, ln := serveNative(t, Config{Core: CoreLoop, Loops: 1},
		service.Method{Name: "test.hold", Handler: func(context.Context, service.Request, []byte) ([]byte, error) {
			<-release // not its context: the request outlives its connection
			return nil, nil
		}})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	// epolls counts the process's epoll descriptors: the runtime's, the
	// loop's and the parked connections' poller's, and a duplicate of each
	// set the runtime watches.
	epolls := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd here")
		}
		n := 0
		for _, e := range ents {
			if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link == "anon_inode:[eventpoll]" {
				n++
			}
		}
		return n
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(c, 0)
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "leaves"})
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.ReadFrame(); err != nil { // WELCOME
		t.Fatal(err)
	}
	if s.Core() != CoreLoop {
		t.Skip("no event loops here")
	}
	l := s.loops.Load().all[0]
	baseline := epolls() // the loop has not parked yet: its set is not watched
	if _, err := c.Write(wire.AppendRequest(nil, 1, "test.hold", nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "test.hold to run", func() bool { return l.elsewhere.Load() == 1 })
	_ = c.Close()
	time.Sleep(100 * time.Millisecond) // the loop sees the close, and parks again
	close(release)
	waitFor(t, 2*time.Second, "test.hold to end", func() bool { return l.elsewhere.Load() == 0 })
	waitFor(t, 5*time.Second, "the loop's duplicate descriptor closed", func() bool { return epolls() == baseline })
}

// waitFor polls cond every millisecond until it holds, failing the test
// after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}
