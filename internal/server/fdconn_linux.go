package server

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/internal/batch"
	"golang.org/x/sys/unix"
)

// fdConn is a connection served by an event loop, which owns its socket's
// descriptor: the net.Conn it was accepted as is closed once the
// descriptor is taken (ownConn), so that the Go runtime's poller no longer
// watches the socket (it woke for every packet, for nothing) and its poll
// descriptor and timers are freed. The loop reads and writes the
// descriptor without waiting; what must wait (a writer's goroutine on a
// slow consumer, a linger, a legacy connection that left its loop) goes
// through a net.Conn opened on the same socket when first needed (slow),
// with the deadlines set so far.
//
// The descriptor is closed once the connection is closed (Close), the
// loop has let it go (release) and no TryWrite is under way, so that its
// number is never reused under a loop or a writer that still uses it.
type fdConn struct {
	fd int
	// The peer's address, kept as a value: a net.TCPAddr would be two
	// allocations more per connection. The local one is asked of the
	// socket when wanted (LocalAddr), which is rarely.
	remote netip.AddrPort

	refs   atomic.Int32 // TryWrites under way
	closed atomic.Bool  // Close was called: no new TryWrite

	mu       sync.Mutex
	held     bool     // guarded by mu: a loop watches the descriptor (until release)
	fdClosed bool     // guarded by mu
	slow     net.Conn // guarded by mu: opened on first need
	rd, wd   int64    // guarded by mu: the deadlines set, unix ns (0: none)
}

// errLoopClosed is what a closed fdConn's reads and writes return.
var errLoopClosed = net.ErrClosed

// ownConn takes the descriptor of a plain TCP connection and closes the
// net.Conn, for a loop. It returns nil, and leaves c as it was, when the
// connection is not one or the descriptor cannot be taken.
func ownConn(c net.Conn) *fdConn {
	raw := parkable(c)
	if raw == nil {
		return nil
	}
	fd := -1
	var err error
	if cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil || err != nil {
		return nil
	}
	// The socket stays non-blocking: the flag belongs to the open file,
	// which the copy shares.
	fc := &fdConn{fd: fd, remote: addrPort(c.RemoteAddr()), held: true}
	_ = c.Close() // the runtime forgets the socket; the copy keeps it open
	return fc
}

// read reads what has arrived, for the loop that holds the descriptor.
func (c *fdConn) read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, errLoopClosed
	}
	return unix.Read(c.fd, p)
}

// TryWrite writes what the socket takes of b now (batch.TryWriter).
func (c *fdConn) TryWrite(b []byte) (int, error) {
	c.refs.Add(1)
	defer c.unref()
	if c.closed.Load() {
		return 0, errLoopClosed
	}
	n, err := unix.Write(c.fd, b)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return 0, nil
	case err != nil:
		return 0, err
	}
	return n, nil
}

func (c *fdConn) unref() {
	if c.refs.Add(-1) == 0 && c.closed.Load() {
		c.closeFD()
	}
}

// release is the loop letting the descriptor go: it no longer watches or
// reads it.
func (c *fdConn) release() {
	c.mu.Lock()
	c.held = false
	c.mu.Unlock()
	if c.closed.Load() {
		c.closeFD()
	}
}

// closeFD closes the descriptor once nobody uses it.
func (c *fdConn) closeFD() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fdClosed || c.held || c.refs.Load() != 0 {
		return
	}
	c.fdClosed = true
	_ = unix.Close(c.fd)
}

// Close ends the connection: the peer sees it closed at once (shutdown),
// and the descriptor is closed once the loop and any writer let it go.
func (c *fdConn) Close() error {
	if c.closed.Swap(true) {
		return errLoopClosed
	}
	c.mu.Lock()
	slow := c.slow
	if !c.fdClosed {
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
	c.mu.Unlock()
	if slow != nil {
		_ = slow.Close()
	}
	c.closeFD()
	return nil
}

// CloseWrite half-closes the connection.
func (c *fdConn) CloseWrite() error {
	c.refs.Add(1)
	defer c.unref()
	if c.closed.Load() {
		return errLoopClosed
	}
	return unix.Shutdown(c.fd, unix.SHUT_WR)
}

// slowConn returns the net.Conn on the socket that waits, opening it on
// first need.
func (c *fdConn) slowConn() (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slow != nil {
		return c.slow, nil
	}
	if c.closed.Load() || c.fdClosed {
		return nil, errLoopClosed
	}
	dup, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "nexo-conn")
	slow, err := net.FileConn(f) // a copy of its own, in the runtime's poller
	_ = f.Close()
	if err != nil {
		return nil, err
	}
	_ = slow.SetReadDeadline(deadline(c.rd))
	_ = slow.SetWriteDeadline(deadline(c.wd))
	c.slow = slow
	return slow, nil
}

// Read waits for input (a legacy connection that left its loop, a
// linger's discard).
func (c *fdConn) Read(p []byte) (int, error) {
	s, err := c.slowConn()
	if err != nil {
		return 0, err
	}
	return s.Read(p)
}

// Write writes all of b, waiting for the socket (the writer's goroutine).
func (c *fdConn) Write(b []byte) (int, error) {
	s, err := c.slowConn()
	if err != nil {
		return 0, err
	}
	return s.Write(b)
}

// addrPort is a TCP address as a value (the zero AddrPort for any other).
func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

// LocalAddr returns the local address, asked of the socket: an empty one
// once the socket is closed.
func (c *fdConn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ap netip.AddrPort
	if !c.fdClosed {
		switch sa, _ := unix.Getsockname(c.fd); a := sa.(type) {
		case *unix.SockaddrInet4:
			ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
	}
	return net.TCPAddrFromAddrPort(ap)
}

// remoteAddrPort returns the peer's address as kept (remoteOf).
func (c *fdConn) remoteAddrPort() netip.AddrPort { return c.remote }

// RemoteAddr returns the peer's address.
func (c *fdConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// SetDeadline sets both deadlines.
func (c *fdConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline bounds the waiting reads (the loop's own reads never
// wait; its timers end a linger).
func (c *fdConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(&c.rd, t, net.Conn.SetReadDeadline)
}

// SetWriteDeadline bounds the waiting writes.
func (c *fdConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(&c.wd, t, net.Conn.SetWriteDeadline)
}

// setDeadline keeps a deadline for the waiting connection, and sets it
// there if it is open.
func (c *fdConn) setDeadline(keep *int64, t time.Time, set func(net.Conn, time.Time) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	*keep = 0
	if !t.IsZero() {
		*keep = t.UnixNano()
	}
	if c.slow != nil {
		return set(c.slow, t)
	}
	return nil
}

// deadline is the time of a deadline kept in unix ns (0: none).
func deadline(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

var (
	_ net.Conn        = (*fdConn)(nil)
	_ batch.TryWriter = (*fdConn)(nil)
)
