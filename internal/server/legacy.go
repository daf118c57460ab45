package server

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The legacy door: the struct-packed packets of the original Python math
// client (spec section 4). It has no handshake, no request ids (answers
// keep the order of requests), no heartbeats (an idle timeout instead)
// and no events.

// DoorLegacy is the legacy door's name in the client list and metrics.
const DoorLegacy = "legacy"

// ServeLegacy accepts legacy-protocol connections on ln until Shutdown.
func (s *Server) ServeLegacy(ln net.Listener) error {
	return s.serve(ln, listener{door: DoorLegacy, handle: s.handleLegacy, fatal: legacyFatal, allow: s.cfg.LegacyAllow})
}

// legacyFatal is the legacy door's last words: an "ERROR <NAME>" line.
func legacyFatal(b []byte, code wire.Code, _ string) []byte { return legacy.AppendError(b, code) }

// legacyConn is the legacy door's codec.
type legacyConn struct {
	// native is set by the reader when the peer turned out to be a native
	// client (its HELLO came first): the last words are then a native
	// ERROR frame, which that client can read.
	native bool
	dec    *legacy.Decoder // set before the reader starts: its byte order rebuilds packets for the monitor
	loop   *loopConn       // set when an event loop serves the connection
	held   request         // on a loop: the request that moves the connection to a goroutine (step)
	buf    [16]byte        // the payload of the request being decoded
}

// AppendResult appends the result line of a math method.
func (*legacyConn) AppendResult(b []byte, _ uint32, m *service.Method, payload []byte) ([]byte, error) {
	return legacy.AppendReply(b, m.Name, payload)
}

// AppendError appends an "ERROR <NAME>" line.
func (*legacyConn) AppendError(b []byte, _ uint32, code wire.Code, _ string) []byte {
	return legacy.AppendError(b, code)
}

// Events is false: the legacy protocol has no events.
func (*legacyConn) Events() bool { return false }

// AppendEvent is never called (no events).
func (*legacyConn) AppendEvent(b []byte, _ string, _ []byte) []byte { return b }

// AppendGoodbye: the legacy protocol has no goodbye; the connection is
// closed after its last answer.
func (*legacyConn) AppendGoodbye(b []byte, _ string) []byte { return b }

// AppendFatal appends an "ERROR <NAME>" line, or an ERROR frame to a
// native client.
func (c *legacyConn) AppendFatal(b []byte, code wire.Code, msg string) []byte {
	if c.native {
		return nativeFatal(b, code, msg)
	}
	return legacyFatal(b, code, msg)
}

// Heartbeats is false: legacy clients cannot answer them.
func (*legacyConn) Heartbeats() bool { return false }

// Ping is never called.
func (*legacyConn) Ping(time.Time) {}

// Wake makes a loop look at its connection; a connection on a goroutine
// always has its reader.
func (c *legacyConn) Wake() {
	if c.loop != nil {
		c.loop.post()
	}
}

// Ordered is true: answers have no ids, so they keep the requests' order.
func (*legacyConn) Ordered() bool { return true }

// handleLegacy runs one legacy connection. There is no handshake: the
// client is registered as soon as it connects.
func (s *Server) handleLegacy(c net.Conn) {
	lc := &legacyConn{}
	if s.loopLegacy(c, lc) {
		return
	}
	defer s.leaveBinary(c)
	lc.dec = legacy.NewDecoder(c)
	sess := s.newSession(c, DoorLegacy, "", 0, func(*session) Codec { return lc })
	s.register(sess)
	sess.end(sess.readLegacy(lc, lc.dec))
}

// readBy sets the reader's deadline to t (zero: none), unless a drain has
// begun, whose linger then bounds the reader: it is looked at again after
// the deadline is set, as tryFinish may run meanwhile.
func (s *session) readBy(t time.Time) {
	_ = s.conn.SetReadDeadline(t)
	if s.finished.Load() {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.Linger))
	}
}

// readLegacy is the legacy session's reader. Packets are answered in order
// on this goroutine, and the replies of a burst are written together.
//
// A connection may wait for its next packet as long as --legacy-idle, but
// once a packet has begun, the rest of it must come within
// HandshakeTimeout: a peer that sends part of a packet (or a native
// client, whose HELLO reads as a packet 4 bytes longer than it is) is not
// waited for minutes.
func (s *session) readLegacy(lc *legacyConn, dec *legacy.Decoder) error {
	for {
		partial := false
		if !dec.HasPacket() {
			if err := dec.Wait(); err != nil {
				return s.readEnded(err)
			}
			if !dec.HasPacket() && !s.finished.Load() {
				partial = true
				s.readBy(time.Now().Add(s.srv.cfg.HandshakeTimeout))
			}
		}
		p, err := dec.Decode()
		if partial {
			s.readBy(time.Time{})
		}
		if err != nil {
			switch {
			case partial && errors.Is(err, os.ErrDeadlineExceeded) && !s.finished.Load():
				err = errLegacyTruncated
			case errors.Is(err, legacy.ErrNativeHello):
				lc.native = true
			}
			return s.readEnded(err)
		}
		s.input(legacy.HeaderLen + len(p.Command))
		s.request(lc.decoded(s, p))
		s.frameDone(dec.HasPacket())
	}
}

// errLegacyTruncated ends a connection that began a packet and did not
// send the rest within HandshakeTimeout.
var errLegacyTruncated = &wire.Error{Code: wire.CodeBadFrame, Msg: "truncated packet: the rest did not come in time"}

// decoded is the request of a packet: its method, if the command names
// one, and its operands as the math methods' payload.
func (lc *legacyConn) decoded(s *session, p legacy.Packet) request {
	r := request{payload: legacy.AppendPayload(lc.buf[:0], p), name: p.Command}
	if method, ok := legacy.Method(p.Command); ok {
		r.m = s.srv.reg.Get(method)
	}
	return r
}
