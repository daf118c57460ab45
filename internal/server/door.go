package server

import (
	"context"
	"net"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The hooks a door outside this package builds on (the WebSocket door in
// internal/web): Admit and Leave around each connection, Authenticate for
// its credentials, NewSession for the session, and Session for reading,
// admitting requests and answering. They are the same functions the
// native and legacy doors use.

// Session is a door's handle on one client session.
type Session struct{ s *session }

// SessionOptions describe a new session.
type SessionOptions struct {
	Door     string // the door's name in the client list and metrics
	Name     string // the client's name, if it gave one
	Admin    bool   // from Authenticate
	Identity string // the verified client certificate's subject, if any
}

// NewSession makes a session on conn, which its output is written to and
// which closing the session closes. newCodec builds the door's codec for
// it. The session is not listed yet: queue the door's welcome with Send,
// then call Register.
func (s *Server) NewSession(conn net.Conn, o SessionOptions, newCodec func(*Session) Codec) *Session {
	h := &Session{}
	h.s = s.newSession(conn, o.Door, o.Name, 0, func(sess *session) Codec {
		h.s = sess
		return newCodec(h)
	})
	h.s.caller.Admin = o.Admin
	h.s.caller.Identity = o.Identity
	return h
}

// ID returns the client id.
func (h *Session) ID() uint64 { return h.s.caller.ID }

// Caller returns who the client is, for the handlers it calls.
func (h *Session) Caller() *service.Caller { return &h.s.caller }

// Context is cancelled when the session closes.
func (h *Session) Context() context.Context { return h.s.context() }

// Register adds the session to the client list.
func (h *Session) Register() { h.s.srv.register(h.s) }

// Received notes n bytes of input: the client is alive.
func (h *Session) Received(n int) {
	h.s.lastSeen.Store(time.Now().UnixNano())
	h.s.bytesIn.Add(uint64(n))
}

// Hold marks the reader busy with input, so that a drain waits for it;
// Unhold ends that.
func (h *Session) Hold() { h.s.acquire() }

// Unhold ends a Hold.
func (h *Session) Unhold() { h.s.release() }

// Admit is the admission of one request, the same as every door's. It
// returns the code and message to refuse it with, or 0. async says the
// request runs beside the reader, holding size bytes meanwhile; when it
// is set and Admit returns 0, call Done with the same size once the
// request is answered.
func (h *Session) Admit(async bool, size int) (wire.Code, string) { return h.s.admit(async, size) }

// Done ends a request admitted with async set.
func (h *Session) Done(size int) {
	h.s.releaseBytes(size)
	h.s.done()
}

// Send queues msg, a whole answer in the door's format, and writes it; it
// counts calls requests, errs of them answered with errors.
func (h *Session) Send(msg []byte, calls, errs int) {
	s := h.s
	s.requests.Add(uint64(calls))
	s.errors.Add(uint64(errs))
	if len(msg) == 0 {
		return
	}
	if s.out.Commit(append(s.out.Begin(), msg...)) == nil {
		_ = s.out.Flush() // failures close the session
	}
}

// Queue queues msg without writing it (a welcome before Register).
func (h *Session) Queue(msg []byte) { _ = h.s.out.Commit(append(h.s.out.Begin(), msg...)) }

// Flush writes what is queued from a goroutine of the writer's own.
func (h *Session) Flush() { h.s.out.FlushAsync() }

// Pong records a heartbeat answered after rtt.
func (h *Session) Pong(rtt time.Duration) {
	h.s.lastSeen.Store(time.Now().UnixNano())
	h.s.pong(rtt)
}

// Fatal ends the session over a protocol error: the codec's last words
// for code, then the close.
func (h *Session) Fatal(code wire.Code, msg string) {
	h.s.refuseAndClose(&wire.Error{Code: code, Msg: msg})
}

// End runs when the door's reader stops, with the error that stopped it
// (io.EOF: the client closed its side): the session is closed and leaves
// the client list.
func (h *Session) End(err error) { h.s.end(err) }

// AddDoor declares a door, so that its counters are listed (at zero)
// before its first connection.
func (s *Server) AddDoor(name string) { s.metrics.door(name) }

// AddUpgradeDoor declares a door whose connections are upgrades of
// connections another door's listener accepted (WebSocket sessions on the
// web door's): its accepted and rejected counts are its upgrades, and the
// server's totals (Stats), which count each TCP connection once, leave
// them out.
func (s *Server) AddUpgradeDoor(name string) { s.metrics.door(name).upgrades.Store(true) }
