package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/internal/batch"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// flushAt is how much output a reader lets pile up in a burst of pipelined
// requests before it writes without waiting for the burst to end.
const flushAt = 64 << 10

// session is one client connection on any door: the session core. Its
// door's Codec says everything in the door's format; nothing here knows
// which door it is.
//
// Lifecycle: the door's reader decodes requests and hands them to the
// core; inline requests are answered on the reader, others on their own
// goroutines, all through out. A session ends hard (close: heartbeat
// timeout, slow consumer, forced shutdown) or gracefully (beginDrain:
// client GOODBYE, server shutdown, kick): no new requests, wait for
// in-flight ones, write everything, half-close, then wait up to Linger for
// the peer to close, so that no reset destroys the last responses.
type session struct {
	// set at construction
	srv         *Server
	door        *doorStats // the door's counters; door.name is its name
	conn        net.Conn   // what out writes to and close closes
	codec       Codec
	caller      service.Caller
	out         *batch.Writer
	connectedAt int64 // unix ns

	// The session's context (context), cancelled with the closeReason as
	// cause when the session closes, is made on first need: an idle
	// connection holds none.
	life atomic.Pointer[lifetime]

	// owned by the reader of the moment (the door hands the reader role
	// from goroutine to goroutine with a happens-before edge)
	rd readerState

	// the count of requests served beside their readers of the event
	// loop the session is on (loop.elsewhere), set before its first
	// request; nil off the loops
	loopWork *atomic.Int64

	lastSeen atomic.Int64 // unix ns of the last input
	pingSent atomic.Int64 // unix ns of the last heartbeat (heartbeat loop)
	rtt      atomic.Int64 // ns of the last heartbeat round trip
	inflight atomic.Int64 // requests being served, +1 while the reader works through a burst
	// bytes held by requests served beside the reader
	inflightBytes atomic.Int64
	requests      atomic.Uint64 // requests received
	errors        atomic.Uint64 // error replies sent
	bytesIn       atomic.Uint64
	goodbye       atomic.Pointer[string] // a drain's goodbye, until it is queued
	reason        atomic.Uint32          // closeReason; the first one set wins
	draining      atomic.Bool            // set once: new requests get SHUTTING_DOWN
	reading       atomic.Bool            // the reader is in a burst, holding answers it has not handed over
	finished      atomic.Bool            // set once: the final flush and half-close have begun
	closed        atomic.Bool            // set once: close has begun, the context is cancelled
	pingless      bool                   // set at construction: the door has no heartbeats, an idle timeout applies
	gone          bool                   // guarded by srv.hub.mu: ended; never subscribe it again
}

// lifetime is a session's context and its cancel.
type lifetime struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// context returns the session's context, made on first need.
func (s *session) context() context.Context {
	if l := s.life.Load(); l != nil {
		return l.ctx
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	if !s.life.CompareAndSwap(nil, &lifetime{ctx, cancel}) {
		cancel(nil)
		return s.life.Load().ctx // made meanwhile by another goroutine
	}
	if s.closed.Load() { // close came while it was made, and did not see it
		cancel(closeReason(s.reason.Load()))
	}
	return ctx
}

// readerState is what the reader of the moment owns: the burst under way
// and the answers of inline requests not yet handed to the writer.
type readerState struct {
	busy       bool   // holding an in-flight unit for the current burst
	served     bool   // the current burst carried a request
	blocked    bool   // see resume
	in, reqs   uint64 // bytes and requests of the burst, counted at its end
	pend       []byte // answers of inline requests, written at the end of the burst
	scratch    []byte // a handler's payload before the codec frames it
	batcher    service.Batcher
	unsettled  pendingObs
	lastMethod *service.Method
	lastStat   *methodStat
	methods    service.LookupCache // the last method looked up by name
	// resume is set when the reader is an event loop: the burst's output
	// is written without waiting, and when the socket does not take it
	// all, blocked is set and resume is called once the writer's own
	// goroutine has written the rest.
	resume func()
}

// newSession returns a session on conn, not yet in the client list (see
// register), with id (0: a new one). newCodec builds the door's codec for
// it.
func (srv *Server) newSession(c net.Conn, door, name string, id uint64, newCodec func(*session) Codec) *session {
	now := time.Now()
	if id == 0 {
		id = srv.ids.Add(1)
	}
	s := &session{
		srv:         srv,
		door:        srv.metrics.door(door),
		conn:        c,
		connectedAt: now.UnixNano(),
	}
	remote, lb := remoteOf(c)
	s.caller = service.Caller{ID: id, Door: door, Remote: remote, Name: name, Loopback: lb, Admin: srv.isAdmin(lb, "")}
	// A loop's connection is a batch.TryWriter: writes from other
	// goroutines (heartbeats, events) go out at once when the socket
	// takes them, without a goroutine.
	opts := batch.Options{Limit: srv.cfg.MaxPending, Timeout: srv.cfg.WriteTimeout, OnError: s.writeFailed}
	s.out = batch.New(c, opts)
	s.lastSeen.Store(now.UnixNano())
	s.pingSent.Store(now.UnixNano())
	s.codec = newCodec(s)
	s.pingless = !s.codec.Heartbeats()
	return s
}

// remoteOf returns the peer's address of c as net.TCPAddr prints it, and
// whether it is a loopback address. A loop's connection answers from the
// address it keeps, without making a net.TCPAddr.
func remoteOf(c net.Conn) (text string, loopback bool) {
	if k, ok := c.(interface{ remoteAddrPort() netip.AddrPort }); ok {
		ap := k.remoteAddrPort()
		ip := ap.Addr().Unmap()
		return netip.AddrPortFrom(ip, ap.Port()).String(), ip.IsLoopback()
	}
	ra := c.RemoteAddr()
	return ra.String(), isLoopback(ra)
}

// remoteText is the text of remoteOf.
func remoteText(c net.Conn) string {
	text, _ := remoteOf(c)
	return text
}

// shard is the metrics shard of this session's requests.
func (s *session) shard() int { return int(s.caller.ID % shards) }

// logger returns the server's logger with this session's attributes. It is
// built per message, not kept: sessions log rarely, and an idle connection
// should not hold a logger of its own.
func (s *session) logger() *slog.Logger {
	return s.srv.log.With(slog.Uint64(keyClientID, s.caller.ID), slog.String(keyDoor, s.door.name), slog.String(keyRemote, s.caller.Remote))
}

// debugging reports whether the server logs at debug level: a session's
// debug messages (every connect and disconnect) are built only then.
func (s *session) debugging() bool {
	return s.srv.log.Enabled(context.Background(), slog.LevelDebug)
}

// info returns the session's row of the client list.
func (s *session) info() status.ClientInfo {
	return status.ClientInfo{
		ID:           s.caller.ID,
		Door:         s.door.name,
		Remote:       s.caller.Remote,
		Name:         s.caller.Name,
		Identity:     s.caller.Identity,
		ConnectedAt:  time.Unix(0, s.connectedAt),
		LastSeen:     time.Unix(0, s.lastSeen.Load()),
		HeartbeatRTT: s.rtt.Load() / 1e3,
		InFlight:     s.inflight.Load(),
		Requests:     s.requests.Load(),
		Errors:       s.errors.Load(),
		BytesIn:      s.bytesIn.Load(),
		BytesOut:     s.out.Written(),
	}
}

func (s *session) setReason(r closeReason) {
	s.reason.CompareAndSwap(uint32(reasonNone), uint32(r))
}

// close ends the session at once: pending output is dropped, the socket is
// closed, and in-flight handlers see their context cancelled.
func (s *session) close(r closeReason) {
	s.setReason(r)
	s.closed.Store(true)
	if l := s.life.Load(); l != nil { // else none is made, or the goroutine making it cancels it
		l.cancel(closeReason(s.reason.Load()))
	}
	s.out.Close()
	_ = s.conn.Close() // a second close reports an error we do not need
	s.codec.Wake()     // a parked session's reader sees the close and ends it
}

// writeFailed is the writer's OnError: the peer stopped reading or the
// socket broke.
func (s *session) writeFailed(err error) {
	if errors.Is(err, batch.ErrOverflow) || errors.Is(err, os.ErrDeadlineExceeded) {
		s.logger().Warn("slow consumer", slog.Any(keyError, err))
		s.close(reasonSlowConsumer)
		return
	}
	if errors.Is(err, net.ErrClosed) {
		// Closed on this side already: by the session (its reason is
		// set), or by a door's library over the peer's protocol error,
		// which the door's reader reports with its reason.
		s.codec.Wake()
		return
	}
	s.close(reasonWriteError)
}

// beginDrain starts a graceful end: from now on requests get SHUTTING_DOWN,
// the ones in flight finish, and then the session writes everything and
// half-closes. goodbye, when not empty, is said first.
//
// The goodbye follows the answers the reader has computed but not yet
// handed to the writer: a reader in the middle of a burst says it at the
// end of the burst. And the drain cannot finish (half-close the writer)
// before the goodbye is queued.
func (s *session) beginDrain(r closeReason, goodbye string) {
	s.setReason(r)
	s.acquire()
	defer s.release() // completes the drain when nothing is in flight
	if s.draining.Swap(true) || goodbye == "" {
		return
	}
	s.goodbye.Store(&goodbye)
	if !s.reading.Load() {
		s.sayGoodbye()
	}
}

// sayGoodbye queues the goodbye of a drain, once.
func (s *session) sayGoodbye() {
	if s.goodbye.Load() == nil {
		return
	}
	if g := s.goodbye.Swap(nil); g != nil {
		_ = s.out.Commit(s.codec.AppendGoodbye(s.out.Begin(), *g)) // a failed writer closes the session anyway
		s.out.FlushAsync()
	}
}

// acquire counts a unit of work that must finish before a drain completes.
func (s *session) acquire() { s.inflight.Add(1) }

// release ends a unit of work and completes a pending drain.
func (s *session) release() {
	if s.inflight.Add(-1) == 0 && s.draining.Load() {
		s.tryFinish()
	}
}

// tryFinish completes a drain once nothing is in flight: everything pending
// is written, the write side is closed, and the reader gets Linger to see
// the peer close.
func (s *session) tryFinish() {
	if s.inflight.Load() != 0 || !s.draining.Load() || s.finished.Swap(true) {
		return
	}
	s.out.CloseWrite()
	_ = s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.Linger)) // fails only when already closed
	s.codec.Wake()                                               // a parked session's reader must see the peer close, or the linger end
}

// sendEvent queues an event of a topic, in the door's format, and
// writes it. Only sessions of doors with events subscribe.
func (s *session) sendEvent(topic string, payload []byte) {
	if s.out.Commit(s.codec.AppendEvent(s.out.Begin(), topic, payload)) == nil {
		s.out.FlushAsync()
	}
}

// ping sends a heartbeat.
func (s *session) ping(now time.Time) {
	s.pingSent.Store(now.UnixNano())
	if now.UnixNano()-s.lastSeen.Load() >= s.srv.cfg.Heartbeat.Nanoseconds()/2 {
		s.out.Trim() // idle, its last PONG aside: it keeps no buffer of past answers
	}
	s.codec.Ping(now)
}

// pong records a heartbeat answered after rtt.
func (s *session) pong(rtt time.Duration) {
	if rtt > 0 && rtt < time.Minute {
		s.rtt.Store(int64(rtt))
		s.srv.metrics.rtt.observe(s.shard(), rtt)
	}
}

// refuseAndClose answers a fatal protocol error and ends the session: the
// door's last words are written, the write side closed, and whatever the
// peer still sends is discarded for up to Linger.
func (s *session) refuseAndClose(err *wire.Error) {
	s.errors.Add(1)
	s.setReason(reasonForCode(err.Code))
	s.draining.Store(true)
	s.finished.Store(true)
	_ = s.out.Commit(s.codec.AppendFatal(s.out.Begin(), err.Code, err.Msg))
	// Written here, not by the half-close's goroutine: a peer that has
	// closed its side already ends the discard below at once, and the
	// close that follows would drop last words still pending (the
	// catalogue's "frame cut short by a half-close" read a bare EOF).
	_ = s.out.Flush()
	s.out.CloseWrite()
	lingerDiscard(s.conn, s.srv.cfg.Linger)
}

// readFailed handles the error that ended a reader: a malformed frame is
// answered and the connection closed; anything else passes through to end.
func (s *session) readFailed(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = &wire.Error{Code: wire.CodeBadFrame, Msg: "truncated frame"}
	}
	if we, ok := errors.AsType[*wire.Error](err); ok {
		if s.debugging() {
			s.logger().Debug("protocol error", slog.String("code", we.Code.String()), slog.String("msg", we.Msg))
		}
		s.refuseAndClose(we)
	}
	return err
}

// end runs when the reader stops: it closes the session with the right
// reason and takes it out of the table. A clean end is the peer closing
// its side; readErr says why otherwise.
func (s *session) end(readErr error) {
	r := reasonReadError
	switch {
	case errors.Is(readErr, net.ErrClosed), errors.Is(readErr, os.ErrDeadlineExceeded):
		// We closed the socket or ended the linger; the reason is set.
	case errors.Is(readErr, io.EOF):
		r = reasonClientClosed
	}
	s.close(r)
	reason := closeReason(s.reason.Load())
	if s.srv.table.remove(s, reason) {
		s.srv.hub.forget(s)
		s.srv.hub.changed()
		s.srv.metrics.closed(reason)
		s.door.closedIn.Add(s.bytesIn.Load())
		s.door.closedOut.Add(s.out.Written())
		if s.debugging() {
			s.logger().Debug("client disconnected", slog.String(keyReason, reason.String()),
				slog.Uint64("requests", s.requests.Load()), slog.Duration("connected", time.Duration(time.Now().UnixNano()-s.connectedAt).Round(time.Millisecond)))
		}
	}
}

// logHandlerError logs what the client is not told: the error behind an
// INTERNAL answer, in the request's span when it has one. The session's
// context is asked for only then.
func (s *session) logHandlerError(sp *tracing.Span, m *service.Method, code wire.Code, err error) {
	if code == wire.CodeInternal && err != nil {
		s.logger().ErrorContext(sp.ContextOr(s.context()), "handler failed", slog.String("method", m.Name), slog.Any(keyError, err))
	}
}
