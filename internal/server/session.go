package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/internal/batch"
	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/wire"
)

// flushAt is how much output a reader lets pile up in a burst of pipelined
// requests before it writes without waiting for the burst to end.
const flushAt = 64 << 10

// session is one client connection on any door.
//
// Lifecycle: the door's goroutine reads; inline requests are answered on it,
// others on their own goroutines, all through out. A session ends hard
// (close: heartbeat timeout, slow consumer, forced shutdown) or gracefully
// (beginDrain: client GOODBYE, server shutdown, kick): no new requests, wait
// for in-flight ones, write everything, half-close, then wait up to Linger
// for the peer to close, so that no reset destroys the last responses.
type session struct {
	// set at construction
	srv         *Server
	id          uint64
	door        string
	conn        net.Conn
	caller      service.Caller
	ctx         context.Context // cancelled, with the closeReason as cause, when the session closes
	cancel      context.CancelCauseFunc
	out         *batch.Writer
	connectedAt time.Time
	ws          *wsConn // WebSocket sessions only

	// native sessions only
	rd    *wire.Reader    // owned by the reader goroutine of the moment
	raw   syscall.RawConn // nil: the connection cannot park
	state atomic.Uint32   // readerRunning or readerParked

	batcher service.Batcher // owned by the reader: held for this burst's forwarded requests
	// owned by the reader: metrics of inline requests
	unsettled  pendingObs
	lastMethod *service.Method
	lastStat   *methodStat

	lastSeen atomic.Int64  // unix ns of the last input
	pingSent atomic.Int64  // unix ns of the last PING (heartbeat loop)
	rtt      atomic.Int64  // ns of the last heartbeat round trip
	inflight atomic.Int64  // requests being served, +1 while the reader works through a burst
	requests atomic.Uint64 // requests received
	errors   atomic.Uint64 // error replies sent
	bytesIn  atomic.Uint64
	reason   atomic.Uint32 // closeReason; the first one set wins
	draining atomic.Bool   // set once: new requests get SHUTTING_DOWN
	finished atomic.Bool   // set once: the final flush and half-close have begun
}

func (srv *Server) newSession(c net.Conn, door, name string) *session {
	now := time.Now()
	s := &session{
		srv:         srv,
		id:          srv.ids.Add(1),
		door:        door,
		conn:        c,
		connectedAt: now,
	}
	remote := c.RemoteAddr().String()
	lb := isLoopback(c.RemoteAddr())
	s.caller = service.Caller{ID: s.id, Door: door, Remote: remote, Name: name, Loopback: lb, Admin: srv.IsAdmin(lb, "")}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.out = batch.New(c, batch.Options{Limit: srv.cfg.MaxPending, Timeout: srv.cfg.WriteTimeout, OnError: s.writeFailed})
	s.lastSeen.Store(now.UnixNano())
	s.pingSent.Store(now.UnixNano())
	return s
}

// shard is the metrics shard of this session's requests.
func (s *session) shard() int { return int(s.id % shards) }

// logger returns the server's logger with this session's attributes. It is
// built per message, not kept: sessions log rarely, and an idle connection
// should not hold a logger of its own.
func (s *session) logger() *slog.Logger {
	return s.srv.log.With(slog.Uint64(keyClientID, s.id), slog.String(keyDoor, s.door), slog.String(keyRemote, s.caller.Remote))
}

func isLoopback(a net.Addr) bool {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.IsLoopback()
	}
	return false
}

// info returns the session's row of the client list.
func (s *session) info() ClientInfo {
	return ClientInfo{
		ID:           s.id,
		Door:         s.door,
		Remote:       s.caller.Remote,
		Name:         s.caller.Name,
		Identity:     s.caller.Identity,
		ConnectedAt:  s.connectedAt,
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
	s.cancel(closeReason(s.reason.Load()))
	s.out.Close()
	_ = s.conn.Close() // a second close reports an error we do not need
	s.wake()           // a parked session's reader sees the close and ends it
}

// writeFailed is the writer's OnError: the peer stopped reading or the
// socket broke.
func (s *session) writeFailed(err error) {
	if errors.Is(err, batch.ErrOverflow) || errors.Is(err, os.ErrDeadlineExceeded) {
		s.logger().Warn("slow consumer", slog.Any(keyError, err))
		s.close(reasonSlowConsumer)
		return
	}
	s.close(reasonWriteError)
}

// beginDrain starts a graceful end: from now on requests get SHUTTING_DOWN,
// the ones in flight finish, and then the session writes everything and
// half-closes. goodbye, when not empty, is sent in a GOODBYE first.
func (s *session) beginDrain(r closeReason, goodbye string) {
	s.setReason(r)
	if s.draining.Swap(true) {
		return
	}
	if goodbye != "" {
		switch s.door {
		case DoorNative:
			_ = s.out.Commit(wire.AppendGoodbye(s.out.Begin(), goodbye)) // a failed writer closes the session anyway
			s.out.FlushAsync()
		case DoorWS:
			s.ws.setGoodbye(goodbye)
			reason, _ := json.Marshal(map[string]string{"reason": goodbye}) // a string map always marshals
			s.sendEvent("goodbye", reason)
		}
	}
	s.tryFinish()
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
	s.wake()                                                     // a parked session's reader must see the peer close, or the linger end
}

// refuseAndClose answers a fatal protocol error and ends the session: the
// reply is written, the write side closed, and whatever the peer still sends
// is discarded for up to Linger.
func (s *session) refuseAndClose(reply []byte, r closeReason) {
	s.errors.Add(1)
	s.setReason(r)
	s.draining.Store(true)
	s.finished.Store(true)
	_ = s.out.Commit(append(s.out.Begin(), reply...))
	s.out.CloseWrite()
	lingerDiscard(s.conn, s.srv.cfg.Linger)
}

// end runs when the reader stops: it closes the session with the right
// reason and takes it out of the table.
func (s *session) end(readErr error) {
	r := reasonReadError
	switch {
	case errors.Is(readErr, net.ErrClosed), errors.Is(readErr, os.ErrDeadlineExceeded):
		// We closed the socket or ended the linger; the reason is set.
	case errors.Is(readErr, io.EOF):
		r = reasonClientClosed
	case s.door == DoorWS:
		switch websocket.CloseStatus(readErr) {
		case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
			r = reasonClientClosed
		}
	}
	s.close(r)
	reason := closeReason(s.reason.Load())
	if s.srv.table.remove(s, reason) {
		s.srv.hub.forget(s)
		s.srv.hub.changed()
		m := s.srv.metrics
		m.closed(reason)
		m.closedIn[doorIndex(s.door)].Add(s.bytesIn.Load())
		m.closedOut[doorIndex(s.door)].Add(s.out.Written())
		s.logger().Info("client disconnected", slog.String(keyReason, reason.String()),
			slog.Uint64("requests", s.requests.Load()), slog.Duration("connected", time.Since(s.connectedAt).Round(time.Millisecond)))
	}
}

// logHandlerError logs what the client is not told.
func (s *session) logHandlerError(method string, code wire.Code, err error) {
	if code == wire.CodeInternal {
		s.logger().Error("handler failed", slog.String("method", method), slog.Any(keyError, err))
	}
}
