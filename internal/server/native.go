package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/wire"
)

// epoch anchors mono readings.
var epoch = time.Now()

// mono is a reading of the monotonic clock for timing requests: the time
// since epoch. It costs one vDSO call, where time.Now makes two (wall and
// monotonic), and its arithmetic is an integer's.
type mono time.Duration

// monoNow reads the monotonic clock.
func monoNow() mono { return mono(time.Since(epoch)) }

// monoOf is the mono reading of a time taken with time.Now.
func monoOf(t time.Time) mono { return mono(t.Sub(epoch)) }

// since is the time elapsed from m until now.
func (m mono) since() time.Duration { return time.Since(epoch) - time.Duration(m) }

// add is the time d after m, as a time.Time whose monotonic reading is
// right (its wall-clock part, process start plus m, must not be compared
// with the wall clock).
func (m mono) add(d time.Duration) time.Time { return epoch.Add(time.Duration(m) + d) }

// errAnswerTooLarge replaces an answer longer than the max frame, which
// the client was told it need not accept: it gets INTERNAL, and the log
// says why.
var errAnswerTooLarge = errors.New("answer longer than the max frame")

// MaxHelloFrame is the largest HELLO frame accepted: the frame limit before
// a client has authenticated. A larger one is answered FRAME_TOO_LARGE.
const MaxHelloFrame = 4 << 10

// handleNative runs one native connection: the handshake here, then the
// session's reader on a goroutine of its own, which starts with a small
// stack while the handshake's (TLS, JSON) grew this one's. A client that
// sent nothing after its HELLO is parked at once instead: it gets a reader
// when its first request comes, so a crowd of idle clients never holds a
// goroutine each, not even while it connects.
func (s *Server) handleNative(c net.Conn) {
	sess, rd := s.handshakeNative(c)
	if sess == nil {
		s.leave(remoteIP(c.RemoteAddr()))
		return
	}
	sess.rd = rd
	sess.raw = parkable(c)
	if !sess.park(rd) {
		go sess.runNative()
	}
}

// handshakeNative reads and checks HELLO, then registers the session and
// sends WELCOME. It returns nil when the connection was refused (and
// closed).
func (s *Server) handshakeNative(c net.Conn) (*session, *wire.Reader) {
	if !s.trackHandshake(c, true) {
		_ = c.Close()
		return nil, nil
	}
	// Before HELLO a peer is untrusted: one deadline covers the TLS
	// handshake and the HELLO, and the reader accepts no frame over
	// MaxHelloFrame, so a connection costs a few KiB until it has
	// authenticated.
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	identity, err := tlsIdentity(c)
	var hello wire.Hello
	rd := wire.NewReader(c, min(MaxHelloFrame, s.cfg.MaxFrame))
	if err == nil {
		hello, err = readHello(rd)
	}
	s.trackHandshake(c, false)
	if err != nil {
		s.log.Debug("handshake failed", slog.String(keyRemote, c.RemoteAddr().String()), slog.Any(keyError, err))
		if we, ok := errors.AsType[*wire.Error](err); ok {
			refuse(c, fatalReply(DoorNative, we.Code, we.Msg), s.cfg.Linger)
			return nil, nil
		}
		_ = c.Close()
		return nil, nil
	}
	ok, admin := s.Credentials(isLoopback(c.RemoteAddr()), hello.Token)
	if !ok {
		s.AuthFailed(c.RemoteAddr().String(), DoorNative, "invalid or missing token in HELLO")
		refuse(c, fatalReply(DoorNative, wire.CodeUnauthorized, "invalid or missing token"), s.cfg.Linger)
		return nil, nil
	}
	_ = c.SetReadDeadline(time.Time{})
	rd.SetMaxFrame(s.cfg.MaxFrame)

	sess := s.newSession(c, DoorNative, hello.Name)
	sess.caller.Identity = identity
	sess.caller.Admin = admin
	welcome, _ := wire.AppendJSON(nil, wire.TypeWelcome, wire.Welcome{ // a struct of numbers and strings always marshals
		ClientID:    sess.id,
		Server:      "nexo/" + s.cfg.Version,
		HeartbeatMS: s.cfg.Heartbeat.Milliseconds(),
		MaxFrame:    s.cfg.MaxFrame,
	})
	_ = sess.out.Commit(append(sess.out.Begin(), welcome...))
	s.register(sess)
	sess.out.Flush()
	return sess, rd
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
	f, err := rd.ReadFrame()
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

// readNative is the session's reader: it reads frames until the connection
// ends and returns why, or until it parks the connection after a burst
// without requests (parked). Inline requests are answered into the
// batch writer as they come; the batch is written once no whole frame is
// left buffered.
func (s *session) readNative(rd *wire.Reader) (parked bool, err error) {
	busy := false       // holding an in-flight unit for the current burst
	var in, reqs uint64 // bytes and requests of the burst, counted at its end
	defer func() {
		if parked {
			return // the session may have another reader already
		}
		s.bytesIn.Add(in)
		s.requests.Add(reqs)
		s.settle(monoNow())
		s.flushForwarded()
		if busy {
			s.release()
		}
	}()
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return false, s.readFailed(err)
		}
		if !busy {
			busy = true
			s.acquire()
		}
		in += uint64(wire.HeaderLen + len(f.Body))
		switch f.Type {
		case wire.TypeRequest:
			reqs++
			s.handleRequest(f)
		case wire.TypePing:
			_ = s.out.Commit(wire.AppendFrame(s.out.Begin(), wire.TypePong, 0, f.ID, f.Body))
		case wire.TypePong:
			s.handlePong(f)
		case wire.TypeGoodbye:
			s.logger().Debug("client said goodbye", slog.String(keyReason, string(f.Body)))
			s.beginDrain(reasonClientGoodbye, "")
		default:
			return false, s.readFailed(&wire.Error{Code: wire.CodeBadFrame, Msg: f.Type.String() + " is not sent by clients"})
		}
		if !rd.HasFrame() {
			idle := reqs == 0
			s.burstDone(in, reqs)
			in, reqs = 0, 0
			busy = false
			s.release()
			if idle && s.park(rd) {
				return true, nil
			}
		} else if s.out.Len() >= flushAt {
			s.burstDone(in, reqs)
			in, reqs = 0, 0
		}
	}
}

// burstDone ends a burst of input, or a part of a long one: it counts the
// burst's bytes and requests, lets forwarded requests go, counts the last
// inline request, and writes the answers.
func (s *session) burstDone(in, reqs uint64) {
	s.bytesIn.Add(in)
	s.requests.Add(reqs)
	s.flushForwarded()
	now := time.Now() // wall clock too: lastSeen is compared with it
	s.settle(monoOf(now))
	s.lastSeen.Store(now.UnixNano())
	_ = s.out.Flush() // a failed writer has closed the session already
}

// readFailed handles the error that ended a reader: a malformed frame is
// answered and the connection closed; anything else passes through to end.
func (s *session) readFailed(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = &wire.Error{Code: wire.CodeBadFrame, Msg: "truncated frame"}
	}
	if we, ok := errors.AsType[*wire.Error](err); ok {
		s.logger().Info("protocol error", slog.String("code", we.Code.String()), slog.String("msg", we.Msg))
		s.refuseAndClose(fatalReply(s.door, we.Code, we.Msg), reasonForCode(we.Code))
	}
	return err
}

// handleRequest answers one REQUEST: inline methods at once, others on a
// goroutine of their own.
func (s *session) handleRequest(f wire.Frame) {
	start := monoNow()
	s.settle(start)                  // the previous inline request ended here
	req, err := wire.ParseRequest(f) // ReadFrame validated it: cannot fail
	if err != nil {
		s.replyError(f.ID, nil, wire.CodeBadFrame, err.Error(), start)
		return
	}
	m := s.srv.reg.Lookup(req.Method)
	if m == nil {
		m = s.srv.reg.Fallback() // a gateway's forwarder, or nil
	}
	switch {
	case s.draining.Load():
		s.replyError(req.ID, m, wire.CodeShuttingDown, "connection is closing; no new requests", start)
		return
	case m == nil:
		s.replyError(req.ID, nil, wire.CodeUnknownMethod, "unknown method "+string(req.Method), start)
		return
	case req.HasDeadline && req.Deadline == 0:
		s.replyError(req.ID, m, wire.CodeTimeout, "deadline of 0 ms passed on arrival", start)
		return
	}
	if m.Inline {
		b, at := wire.StartFrame(s.out.Begin(), wire.TypeResponse, 0, req.ID)
		b, err := m.Call(s.ctx, service.Request{Payload: req.Payload, Caller: &s.caller}, b)
		if err == nil && len(b)-at-4 > s.srv.cfg.MaxFrame {
			err = fmt.Errorf("%w: %d bytes", errAnswerTooLarge, len(b)-at-4)
		}
		var code wire.Code
		if err != nil {
			code = service.CodeOf(err)
			b = wire.AppendError(b[:at], req.ID, code, service.ErrorMessage(code, err))
			s.errors.Add(1)
			defer s.logHandlerError(m.Name, code, err)
		} else {
			b = wire.FinishFrame(b, at)
		}
		_ = s.out.Commit(b)
		// Counted when the next clock reading is taken (the next request,
		// or the end of the burst): one reading per request, not two.
		s.unsettled = pendingObs{st: s.statFor(m), code: code, start: start}
		return
	}
	// The reader holds one unit of the in-flight count; the rest are
	// handlers running now.
	if s.inflight.Load() > int64(s.srv.cfg.MaxInFlight) {
		s.replyError(req.ID, m, wire.CodeBusy, "too many requests in flight on this connection", start)
		return
	}
	if s.srv.async.Load() >= int64(s.srv.cfg.MaxInFlightTotal) {
		s.replyError(req.ID, m, wire.CodeBusy, "too many requests in flight on this server", start)
		return
	}
	timeout := s.srv.cfg.RequestTimeout
	if req.HasDeadline {
		timeout = time.Duration(req.Deadline) * time.Millisecond
	}
	s.acquire()
	s.srv.async.Add(1)
	if m.Async != nil {
		// Served elsewhere: the answer comes back on another goroutine, so
		// the connection stays pipelined and nothing waits here.
		id := req.ID
		if m.Batcher != nil && m.Batcher != s.batcher {
			s.flushForwarded()
			s.batcher = m.Batcher
			s.batcher.Hold()
		}
		// The deadline may travel to another machine as wall-clock time:
		// take it from the wall clock, not from monoNow.
		m.Async(service.Request{Method: req.Method, Payload: req.Payload, Caller: &s.caller}, time.Now().Add(timeout),
			func(resp []byte, err error) service.Flusher {
				s.answer(m, id, resp, err, start, false)
				return s
			})
		return
	}
	go s.runAsync(m, req.ID, append([]byte(nil), req.Payload...), start, start.add(timeout))
}

// Flush writes the answers a forwarder delivered, from a goroutine of the
// writer: a forwarder's goroutine must not block on a slow client.
func (s *session) Flush() { s.out.FlushAsync() }

// pendingObs is an inline request answered but not yet counted: its
// duration ends at the next clock reading of the reader.
type pendingObs struct {
	st    *methodStat // nil: nothing pending
	code  wire.Code
	start mono
}

// settle counts the pending inline request, if any, as ending at now.
func (s *session) settle(now mono) {
	if p := s.unsettled; p.st != nil {
		s.srv.metrics.record(s.shard(), p.st, p.code, time.Duration(now-p.start))
		s.unsettled.st = nil
	}
}

// statFor returns a method's counters, remembering the last method asked:
// connections mostly call the same method again and again.
func (s *session) statFor(m *service.Method) *methodStat {
	if m != s.lastMethod || s.lastStat == nil {
		s.lastMethod, s.lastStat = m, s.srv.metrics.statOf(m)
	}
	return s.lastStat
}

// flushForwarded releases the batcher this burst held, so that it can send
// the requests it holds back.
func (s *session) flushForwarded() {
	if s.batcher != nil {
		s.batcher.Release()
		s.batcher = nil
	}
}

// runAsync serves one request on its own goroutine and writes the answer.
func (s *session) runAsync(m *service.Method, id uint32, payload []byte, start mono, deadline time.Time) {
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	resp, err := m.Call(ctx, service.Request{Payload: payload, Caller: &s.caller}, nil)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // finished too late: the client has given up
	}
	cancel()
	s.answer(m, id, resp, err, start, true)
}

// answer writes the result of a request that was not served inline and
// gives back its in-flight unit. write says whether to write from the
// calling goroutine; otherwise the answer waits for Flush, so that answers
// delivered together by a forwarder share one write.
func (s *session) answer(m *service.Method, id uint32, resp []byte, err error, start mono, write bool) {
	defer s.srv.async.Add(-1)
	defer s.release()
	if err == nil && wire.HeaderLen-4+len(resp) > s.srv.cfg.MaxFrame {
		err = fmt.Errorf("%w: %d bytes", errAnswerTooLarge, wire.HeaderLen-4+len(resp))
	}
	b := s.out.Begin()
	var code wire.Code
	if err != nil {
		code = service.CodeOf(err)
		b = wire.AppendError(b, id, code, service.ErrorMessage(code, err))
		s.errors.Add(1)
		defer s.logHandlerError(m.Name, code, err)
	} else {
		b = wire.AppendResponse(b, id, resp)
	}
	if s.out.Commit(b) == nil {
		if write {
			_ = s.out.Flush() // failures close the session
		}
	}
	s.srv.metrics.observe(s.shard(), m, code, start.since())
}

// replyError queues a request-level ERROR and counts it against the
// method (nil when unknown); the connection stays open.
func (s *session) replyError(id uint32, m *service.Method, code wire.Code, msg string, start mono) {
	s.errors.Add(1)
	_ = s.out.Commit(wire.AppendError(s.out.Begin(), id, code, msg))
	s.srv.metrics.observe(s.shard(), m, code, start.since())
}

// sendPing queues a PING whose body is the send time, so the PONG tells the
// round trip without any state.
func (s *session) sendPing(now time.Time) {
	s.pingSent.Store(now.UnixNano())
	var body [8]byte
	binary.BigEndian.PutUint64(body[:], uint64(now.UnixNano()))
	if s.out.Commit(wire.AppendFrame(s.out.Begin(), wire.TypePing, 0, 0, body[:])) == nil {
		s.out.FlushAsync()
	}
}

// handlePong records the heartbeat round trip from a PONG to our PING.
func (s *session) handlePong(f wire.Frame) {
	if len(f.Body) != 8 {
		return // not an answer to one of our PINGs
	}
	rtt := time.Now().UnixNano() - int64(binary.BigEndian.Uint64(f.Body))
	if rtt > 0 && rtt < int64(time.Minute) {
		s.rtt.Store(rtt)
		s.srv.metrics.rtt.Observe(time.Duration(rtt).Seconds())
	}
}

// fatalReply is a door's last words before it closes a connection: an
// ERROR frame with id 0 on the native door, an "ERROR <NAME>" line on the
// legacy one.
func fatalReply(door string, code wire.Code, msg string) []byte {
	if door == DoorLegacy {
		return legacy.AppendError(nil, code)
	}
	return wire.AppendError(nil, 0, code, msg)
}
