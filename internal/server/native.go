package server

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The native door: nexo's own framed binary protocol (spec section 2).

// DoorNative is the native door's name in the client list and metrics.
const DoorNative = "native"

// MaxHelloFrame is the largest HELLO frame accepted: the frame limit before
// a client has authenticated. A larger one is answered FRAME_TOO_LARGE.
const MaxHelloFrame = 4 << 10

// ServeNative accepts native-protocol connections on ln until Shutdown.
func (s *Server) ServeNative(ln net.Listener) error {
	return s.serve(ln, listener{door: DoorNative, handle: s.handleNative, fatal: nativeFatal})
}

// nativeFatal is the native door's last words: an ERROR frame with id 0.
func nativeFatal(b []byte, code wire.Code, msg string) []byte {
	return wire.AppendError(b, 0, code, msg)
}

// nativeConn is the native door's codec and reader state for one session.
type nativeConn struct {
	s     *session
	rd    *wire.Reader    // owned by the reader goroutine of the moment
	raw   syscall.RawConn // nil: the connection cannot park
	state atomic.Uint32   // readerRunning or readerParked
	loop  *loopConn       // set when an event loop serves the connection
}

// AppendResult appends a RESPONSE frame.
func (n *nativeConn) AppendResult(b []byte, ref uint32, _ *service.Method, payload []byte) ([]byte, error) {
	return wire.AppendResponse(b, ref, payload), nil
}

// AppendError appends an ERROR frame for request ref.
func (n *nativeConn) AppendError(b []byte, ref uint32, code wire.Code, msg string) []byte {
	return wire.AppendError(b, ref, code, msg)
}

// Events is true: the native door has EVENT frames.
func (n *nativeConn) Events() bool { return true }

// AppendEvent appends an EVENT frame.
func (n *nativeConn) AppendEvent(b []byte, topic string, payload []byte) []byte {
	return wire.AppendEvent(b, topic, payload)
}

// AppendGoodbye appends a GOODBYE frame.
func (n *nativeConn) AppendGoodbye(b []byte, reason string) []byte {
	return wire.AppendGoodbye(b, reason)
}

// AppendFatal appends an ERROR frame with id 0.
func (n *nativeConn) AppendFatal(b []byte, code wire.Code, msg string) []byte {
	return nativeFatal(b, code, msg)
}

// Heartbeats is true: PING and PONG frames.
func (n *nativeConn) Heartbeats() bool { return true }

// Ping queues a PING whose body is the send time, so the PONG tells the
// round trip without any state.
func (n *nativeConn) Ping(now time.Time) {
	var body [8]byte
	binary.BigEndian.PutUint64(body[:], uint64(now.UnixNano()))
	if n.s.out.Commit(wire.AppendFrame(n.s.out.Begin(), wire.TypePing, 0, 0, body[:])) == nil {
		n.s.out.FlushAsync()
	}
}

// Ordered is false: answers carry the request id.
func (n *nativeConn) Ordered() bool { return false }

// handleNative runs one native connection: the handshake here, then the
// session's reader on a goroutine of its own, which starts with a small
// stack while the handshake's (TLS, JSON) grew this one's. A client that
// sent nothing after its HELLO is parked at once instead: it gets a reader
// when its first request comes, so a crowd of idle clients never holds a
// goroutine each, not even while it connects.
func (s *Server) handleNative(c net.Conn) {
	if s.helloOnLoop(c) {
		return
	}
	n := s.handshakeNative(c)
	if n == nil {
		s.leaveBinary(c)
		return
	}
	n.raw = parkable(c)
	if n.loop != nil {
		n.loop.post() // its loop serves it from now on
		return
	}
	if !n.park() {
		go n.run()
	}
}

// handshakeNative reads and checks HELLO, then registers the session and
// sends WELCOME. It returns nil when the connection was refused (and
// closed).
func (s *Server) handshakeNative(c net.Conn) *nativeConn {
	if !s.trackHandshake(c, true) {
		_ = c.Close()
		return nil
	}
	// Before HELLO a peer is untrusted: one deadline covers the TLS
	// handshake and the HELLO, and the reader accepts no frame over
	// MaxHelloFrame, so a connection costs a few KiB until it has
	// authenticated.
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	identity, err := tlsIdentity(c)
	inTLS := err != nil
	var hello wire.Hello
	rd := wire.NewReader(c, min(MaxHelloFrame, s.cfg.MaxFrame))
	if err == nil {
		hello, err = readHello(rd)
	}
	s.trackHandshake(c, false)
	if err != nil {
		s.log.Debug("handshake failed", slog.String(keyRemote, c.RemoteAddr().String()), slog.Any(keyError, err))
		s.metrics.handshakeFailed[handshakeFailure(err, inTLS)].Add(1)
		if re, ok := errors.AsType[tls.RecordHeaderError](err); ok && re.Conn != nil {
			// A client that sent plain text to a TLS door: it reads a
			// native ERROR in plain text, which says what to do, where a
			// closed connection said nothing.
			refuse(re.Conn, nativeFatal(nil, wire.CodeBadFrame, "this door speaks TLS: connect with TLS (nexo call --tls-ca FILE, or --tls)"), s.cfg.Linger)
			return nil
		}
		if we, ok := errors.AsType[*wire.Error](err); ok {
			refuse(c, nativeFatal(nil, we.Code, we.Msg), s.cfg.Linger)
			return nil
		}
		_ = c.Close()
		return nil
	}
	admin, aerr := s.Authenticate(c.RemoteAddr().String(), hello.Token, DoorNative)
	if aerr != nil {
		refuse(c, nativeFatal(nil, wire.CodeUnauthorized, aerr.Error()), s.cfg.Linger)
		return nil
	}
	_ = c.SetReadDeadline(time.Time{})
	if s.loops.Load() != nil {
		// A loop will serve it (a TLS connection, which the loops do not
		// take, stays here): the loop owns the socket from now on.
		if fc := ownConn(c); fc != nil {
			c = fc
		}
	}
	n := s.welcome(c, rd, hello, identity, admin, 0)
	// A loop's connection is ready for its loop before anyone can see the
	// session: a kick right after register posts it.
	s.loopNative(n)
	s.register(n.s)
	n.s.out.Flush()
	return n
}

// welcome makes the session of a native connection whose HELLO was
// accepted, reading from rd, with id (0: a new one), and queues its
// WELCOME. The caller registers it and flushes.
func (s *Server) welcome(c net.Conn, rd *wire.Reader, hello wire.Hello, identity string, admin bool, id uint64) *nativeConn {
	rd.SetMaxFrame(s.cfg.MaxFrame)
	if hello.Trace {
		rd.AllowFlags(wire.FlagTrace) // granted whether tracing is on or not: the field costs nothing
	}
	var n *nativeConn
	sess := s.newSession(c, DoorNative, hello.Name, id, func(sess *session) Codec {
		n = &nativeConn{s: sess, rd: rd}
		return n
	})
	sess.caller.Identity = identity
	sess.caller.Admin = admin
	welcome, _ := wire.AppendJSON(nil, wire.TypeWelcome, wire.Welcome{ // a struct of numbers and strings always marshals
		ClientID:    sess.caller.ID,
		Server:      "nexo/" + s.cfg.Version,
		HeartbeatMS: s.cfg.Heartbeat.Milliseconds(),
		MaxFrame:    s.cfg.MaxFrame,
		Trace:       hello.Trace,
	})
	_ = sess.out.Commit(append(sess.out.Begin(), welcome...))
	return n
}

// Why native handshakes fail, as counted (Metrics.HandshakeFailed).
const (
	failTimeout = iota
	failTLS
	failBadFrame
	failTooLarge
	failVersion
	failClosed
	nFailures
)

// handshakeFailures names the failures.
var handshakeFailures = [nFailures]string{"timeout", "tls", "bad frame", "frame too large", "unsupported version", "closed"}

// handshakeFailure classifies a failed handshake's error; inTLS says the
// TLS handshake is what failed.
func handshakeFailure(err error, inTLS bool) int {
	if we, ok := errors.AsType[*wire.Error](err); ok {
		switch we.Code {
		case wire.CodeFrameTooLarge:
			return failTooLarge
		case wire.CodeUnsupportedVersion:
			return failVersion
		}
		return failBadFrame
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return failTimeout
	}
	if inTLS && !errors.Is(err, io.EOF) {
		return failTLS
	}
	return failClosed
}

// tlsIdentity completes the TLS handshake of a TLS connection (within the
// read deadline already set) and returns the subject of the client's
// verified certificate, if it sent one. Plain connections have none.
func tlsIdentity(c net.Conn) (string, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return "", nil
	}
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
		return st.VerifiedChains[0][0].Subject.String(), nil
	}
	return "", nil
}

// readHello reads the first frame, which must be a valid HELLO.
func readHello(rd *wire.Reader) (wire.Hello, error) {
	return helloOf(rd.ReadFrame())
}

// helloOf checks that the first frame read is a HELLO, and parses it.
func helloOf(f wire.Frame, err error) (wire.Hello, error) {
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return wire.Hello{}, &wire.Error{Code: wire.CodeBadFrame, Msg: "truncated frame"}
		}
		return wire.Hello{}, err
	}
	if f.Type != wire.TypeHello {
		return wire.Hello{}, &wire.Error{Code: wire.CodeBadFrame, Msg: "the first frame must be HELLO, not " + f.Type.String()}
	}
	return wire.ParseHello(f.Body)
}

// read is the session's reader: it reads frames until the connection ends
// and returns why, or until it parks the connection after a burst without
// requests (parked). Inline requests are answered as they come; the
// burst's answers are written once no whole frame is left buffered.
func (n *nativeConn) read() (parked bool, err error) {
	s := n.s
	for {
		f, err := n.rd.ReadFrame()
		if err == nil {
			err = n.frame(f)
		}
		if err != nil {
			return false, s.readEnded(err)
		}
		idle := !s.rd.served
		if s.frameDone(n.rd.HasFrame()) && idle && n.park() {
			return true, nil
		}
	}
}

// frame hands one frame to the core. It returns the protocol error of a
// frame that clients do not send.
func (n *nativeConn) frame(f wire.Frame) error {
	s := n.s
	s.input(wire.HeaderLen + len(f.Body))
	switch f.Type {
	case wire.TypeRequest:
		n.request(f)
	case wire.TypePing:
		s.rd.pend = wire.AppendFrame(s.rd.pend, wire.TypePong, 0, f.ID, f.Body)
	case wire.TypePong:
		n.pong(f)
	case wire.TypeGoodbye:
		if s.debugging() {
			s.logger().Debug("client said goodbye", slog.String(keyReason, string(f.Body)))
		}
		s.beginDrain(reasonClientGoodbye, "")
	default:
		return &wire.Error{Code: wire.CodeBadFrame, Msg: f.Type.String() + " is not sent by clients"}
	}
	return nil
}

// request hands one REQUEST frame to the core.
func (n *nativeConn) request(f wire.Frame) {
	req, err := wire.ParseRequest(f) // ReadFrame validated it: cannot fail
	if err != nil {
		n.s.replyError(f.ID, nil, wire.CodeBadFrame, err.Error(), monoNow())
		return
	}
	r := request{ref: req.ID, m: n.s.srv.lookup(req.Method, &n.s.rd.methods), name: req.Method, payload: req.Payload, trace: req.Trace}
	if req.HasDeadline {
		r.timeout = time.Duration(req.Deadline) * time.Millisecond
		r.expired = req.Deadline == 0
	}
	n.s.request(r)
}

// pong records the heartbeat round trip from a PONG to our PING.
func (n *nativeConn) pong(f wire.Frame) {
	if len(f.Body) != 8 {
		return // not an answer to one of our PINGs
	}
	n.s.pong(time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(f.Body))))
}
