package server

import (
	"syscall"
)

// Idle native connections hold no goroutine. A connection is parked right
// after its handshake, unless requests came with the HELLO, and a reader
// whose burst carried no request (an idle client answering a heartbeat
// PING, typically) parks its connection again: it hands the socket to the
// server's poller and exits.
// The poller waits for input on every parked socket at once, on one
// goroutine, and starts a reader again when input comes. Closing or
// draining a parked session starts its reader too (Codec.Wake), so that
// the reader always sees its connection's end and calls end. An idle
// client then costs its session and socket, not a goroutine stack.
//
// Only plain TCP connections park (a TLS connection may hold decrypted
// input the socket no longer shows), and only where the poller exists
// (Linux, epoll).

// keepParked is the largest reader buffer a parked connection keeps.
const keepParked = 512

// Reader states of a parkable connection.
const (
	readerRunning uint32 = iota // a goroutine reads the connection
	readerParked                // the poller waits for input on the socket
)

// parkable returns the raw socket of a connection that can park, or nil.
func parkable(c any) syscall.RawConn {
	sc, ok := c.(syscall.Conn) // *net.TCPConn; *tls.Conn is not one
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// run is a native session's reader goroutine, first started after the
// handshake and again each time a parked connection wakes. It returns
// without ending the session when it parked the connection.
func (n *nativeConn) run() {
	parked, err := n.read()
	if parked {
		return
	}
	n.s.end(err)
	n.s.srv.leaveBinary(n.s.conn)
}

// park hands the connection to the poller, after the handshake or after a
// burst without requests. It reports whether it did; the caller must then
// leave the session alone, for another reader may already be running.
func (n *nativeConn) park() bool {
	s := n.s
	if n.raw == nil || n.rd.HasFrame() || s.draining.Load() {
		return false
	}
	p := s.srv.poll.Load()
	if p == nil {
		return false
	}
	// A parked connection keeps no buffer of a past burst.
	if cap(s.rd.pend) > keepParked {
		s.rd.pend = nil
	}
	if cap(s.rd.scratch) > keepParked {
		s.rd.scratch = nil
	}
	n.state.Store(readerParked)
	if !p.park(n) {
		// Not parked. Unless a wake took the session meanwhile (and
		// started another reader), this reader goes on.
		return !n.state.CompareAndSwap(readerParked, readerRunning)
	}
	// A drain or close that came before the state said parked did not
	// wake the session: look again now that it does.
	if s.draining.Load() || s.closed.Load() {
		n.Wake()
	}
	return true
}

// Wake starts a reader for a parked session: input came, or the session
// is closing or draining and its reader must see that. It does nothing
// when a reader runs.
func (n *nativeConn) Wake() {
	if n.loop != nil {
		n.loop.post()
		return
	}
	if n.state.CompareAndSwap(readerParked, readerRunning) {
		n.s.srv.poll.Load().forget(n.s.caller.ID)
		go n.run()
	}
}
