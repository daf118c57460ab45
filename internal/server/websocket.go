package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/internal/jsonrpc"
	"github.com/nexo-project/nexo/wire"
)

// WebSocketOptions configure ServeWebSocket.
type WebSocketOptions struct {
	// OriginPatterns are the other origins whose pages may open a
	// WebSocket, as host patterns ("example.com", "*.example.com:8443").
	// The page's own origin is always allowed; a foreign one is refused
	// with 403.
	OriginPatterns []string
}

// Welcome is the first message of a WebSocket session, sent as the
// notification event.welcome: the equivalent of the native WELCOME.
type Welcome struct {
	ClientID    uint64 `json:"client_id"`
	Server      string `json:"server"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
	MaxFrame    int    `json:"max_frame"`
	Admin       bool   `json:"admin"` // the session may use admin methods and sees remote addresses
}

// ServeWebSocket upgrades an HTTP request to a WebSocket session that
// carries one JSON-RPC message per text message, run by rpc. The session
// gets a client id, is listed with door "ws", receives the events it
// subscribes to as notifications, and is watched by heartbeats (WebSocket
// pings). The optional query parameter name names the client; the admin
// token comes as "Authorization: Bearer" or, since browsers cannot set
// headers on a WebSocket, as the query parameter token; it is checked as
// Credentials says. A wrong or missing token is refused with 401 before
// the upgrade, and counted against the address (429 once it is over its
// failure limit).
func (s *Server) ServeWebSocket(w http.ResponseWriter, r *http.Request, rpc *jsonrpc.RPC, opts WebSocketOptions) {
	remote := parseAddr(r.RemoteAddr)
	if s.AuthBlocked(r.RemoteAddr) {
		s.metrics.authFailures[doorIndex(DoorWS)].Add(1)
		http.Error(w, string(refusedAuthLimit), http.StatusTooManyRequests)
		return
	}
	token, _ := RequestToken(r)
	ok, admin := s.Credentials(jsonrpc.IsLoopback(r.RemoteAddr), token)
	if !ok {
		s.AuthFailed(r.RemoteAddr, DoorWS, "invalid or missing token")
		w.Header().Set("WWW-Authenticate", `Bearer realm="nexo"`)
		http.Error(w, "invalid or missing token", http.StatusUnauthorized)
		return
	}
	name := r.URL.Query().Get("name")
	if len(name) > wire.MaxNameLen {
		http.Error(w, "name over 64 bytes", http.StatusBadRequest)
		return
	}
	if s.shutting.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	ip := remoteIP(remote)
	if why := s.admit(ip, DoorWS); why != admitted {
		s.logRefusal(DoorWS, r.RemoteAddr, why)
		http.Error(w, string(why), http.StatusServiceUnavailable)
		return
	}
	defer s.leave(ip)
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: opts.OriginPatterns})
	if err != nil {
		// Accept has answered (403 for a foreign origin, 426 without an upgrade).
		s.log.Info("websocket refused", slog.String(keyRemote, r.RemoteAddr), slog.String("origin", r.Header.Get("Origin")), slog.Any(keyError, err))
		s.metrics.rejected[doorIndex(DoorWS)].Add(1)
		return
	}
	s.metrics.accepted[doorIndex(DoorWS)].Add(1)
	c.SetReadLimit(int64(s.cfg.MaxFrame))
	wc := &wsConn{ws: c, remote: remote}
	sess := s.newSession(wc, DoorWS, name)
	sess.ws = wc
	sess.caller.Admin = admin
	sess.caller.Identity = RequestIdentity(r)
	welcome, _ := json.Marshal(Welcome{ // numbers, strings and a bool always marshal
		ClientID: sess.id, Server: "nexo/" + s.cfg.Version, HeartbeatMS: s.cfg.Heartbeat.Milliseconds(),
		MaxFrame: s.cfg.MaxFrame, Admin: admin,
	})
	_ = sess.out.Commit(appendNotification(sess.out.Begin(), "event.welcome", welcome))
	s.register(sess)
	sess.out.FlushAsync()
	sess.end(sess.readWS(rpc))
}

// RequestIdentity returns the subject of the verified client certificate
// of an HTTPS request (mutual TLS), or "".
func RequestIdentity(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.String()
	}
	return ""
}

// RequestToken returns the token an HTTP request carries, from
// "Authorization: Bearer" or the query parameter token, and whether it
// carries one.
func RequestToken(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		return strings.CutPrefix(h, "Bearer ")
	}
	if r.URL.Query().Has("token") {
		return r.URL.Query().Get("token"), true
	}
	return "", false
}

func parseAddr(s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

// errBinaryMessage ends a WebSocket session that sent a binary message.
var errBinaryMessage = errors.New("binary WebSocket message")

// readWS is a WebSocket session's reader. Each message runs on its own
// goroutine, so that a slow call does not hold back the others; answers are
// written as they are ready, in any order, as JSON-RPC allows.
func (s *session) readWS(rpc *jsonrpc.RPC) error {
	var buf bytes.Buffer // the message being handled, reused when it was small
	for {
		// No context to watch: closing the session closes the WebSocket,
		// which ends a Read, and a context would cost a callback per message.
		typ, r, err := s.ws.ws.Reader(context.Background())
		if err != nil {
			return err
		}
		if buf.Cap() > keepMessage {
			buf = bytes.Buffer{}
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		msg := buf.Bytes()
		now := time.Now()
		s.lastSeen.Store(now.UnixNano())
		s.bytesIn.Add(uint64(len(msg)))
		if typ != websocket.MessageText {
			s.ws.closeWith(websocket.StatusUnsupportedData, "send JSON-RPC as text messages")
			s.setReason(reasonBadFrame)
			return errBinaryMessage
		}
		switch {
		case s.draining.Load():
			s.replyWS(rpc.Refuse(msg, wire.CodeShuttingDown, "connection is closing; no new requests"))
		case s.inflight.Load() >= int64(s.srv.cfg.MaxInFlight):
			s.replyWS(rpc.Refuse(msg, wire.CodeBusy, "too many requests in flight on this connection"))
		case s.srv.async.Load() >= int64(s.srv.cfg.MaxInFlightTotal):
			s.replyWS(rpc.Refuse(msg, wire.CodeBusy, "too many requests in flight on this server"))
		default:
			s.acquire()
			// One call of a cheap method is answered here, without a
			// goroutine; anything else runs on a goroutine of its own.
			if out, t, ok := rpc.HandleInline(s.ctx, &s.caller, msg); ok {
				s.replyWS(out, t)
				s.release()
				continue
			}
			s.srv.async.Add(1)
			msg := bytes.Clone(msg) // buf is the next message's
			go func() {
				defer s.srv.async.Add(-1)
				defer s.release()
				s.replyWS(rpc.Handle(s.ctx, &s.caller, msg))
			}()
		}
	}
}

// keepMessage is the largest message buffer a WebSocket reader keeps for
// the next message.
const keepMessage = 64 << 10

// replyWS counts a handled message and queues its answer, if any.
func (s *session) replyWS(out []byte, t jsonrpc.Tally) {
	s.requests.Add(uint64(t.Calls))
	s.errors.Add(uint64(t.Errors))
	if out == nil {
		return
	}
	b := append(s.out.Begin(), out...)
	if s.out.Commit(append(b, '\n')) == nil {
		_ = s.out.Flush() // failures close the session
	}
}

// pingWS sends a WebSocket ping; its pong counts as a sign of life and
// gives the round trip. Browsers answer pings by themselves.
func (s *session) pingWS(now time.Time) {
	s.pingSent.Store(now.UnixNano())
	go func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.Heartbeat)
		defer cancel()
		if s.ws.ws.Ping(ctx) == nil {
			done := time.Now()
			s.lastSeen.Store(done.UnixNano())
			rtt := done.Sub(now)
			s.rtt.Store(int64(rtt))
			s.srv.metrics.rtt.Observe(rtt.Seconds())
		}
	}()
}

// wsConn lets a session's batch writer write to a WebSocket: each
// newline-terminated JSON message of a batch becomes one text message.
// Reads go through the websocket.Conn directly.
type wsConn struct {
	ws     *websocket.Conn
	remote net.Addr

	mu       sync.Mutex
	deadline time.Time   // guarded by mu: write deadline
	goodbye  string      // guarded by mu: close reason for CloseWrite
	timer    *time.Timer // guarded by mu: closes the connection at the read deadline
	wtimer   *time.Timer // guarded by mu: fires at the write deadline

	writing  atomic.Bool // a Write is under way
	timedOut atomic.Bool // a Write outlived its deadline and the connection was closed
}

// Write sends each message of p; a message ends at '\n' (JSON-RPC output
// never holds a raw newline).
//
// The write deadline is kept by one timer (see SetWriteDeadline), not by a
// context per write: a context with a deadline costs a timer and a
// callback for every message.
func (w *wsConn) Write(p []byte) (int, error) {
	w.writing.Store(true)
	defer w.writing.Store(false)
	n := 0
	for len(p) > 0 {
		msg, rest, _ := bytes.Cut(p, []byte{'\n'})
		if err := w.ws.Write(context.Background(), websocket.MessageText, msg); err != nil {
			if w.timedOut.Load() {
				return n, os.ErrDeadlineExceeded
			}
			return n, err
		}
		n += len(p) - len(rest)
		p = rest
	}
	return n, nil
}

// Read is not used: the session reads messages from the websocket.Conn.
func (w *wsConn) Read([]byte) (int, error) { return 0, io.EOF }

// CloseWrite starts the WebSocket closing handshake with the goodbye
// reason, without blocking the batch writer that calls it.
func (w *wsConn) CloseWrite() error {
	w.mu.Lock()
	reason := w.goodbye
	w.mu.Unlock()
	code := websocket.StatusNormalClosure
	if reason != "" {
		code = websocket.StatusGoingAway
	}
	go w.closeWith(code, reason)
	return nil
}

func (w *wsConn) closeWith(code websocket.StatusCode, reason string) {
	if len(reason) > 120 { // a close frame's reason fits in 123 bytes
		reason = reason[:120]
	}
	_ = w.ws.Close(code, reason) // waits up to 5s for the peer's close; errors mean it is gone
}

func (w *wsConn) setGoodbye(reason string) {
	w.mu.Lock()
	w.goodbye = reason
	w.mu.Unlock()
}

// Close drops the connection at once.
func (w *wsConn) Close() error {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.wtimer != nil {
		w.wtimer.Stop()
	}
	w.mu.Unlock()
	return w.ws.CloseNow()
}

// LocalAddr is not known for a hijacked HTTP connection.
func (w *wsConn) LocalAddr() net.Addr { return &net.TCPAddr{} }

// RemoteAddr returns the client's address.
func (w *wsConn) RemoteAddr() net.Addr { return w.remote }

// SetDeadline sets the write deadline and the read deadline.
func (w *wsConn) SetDeadline(t time.Time) error {
	_ = w.SetReadDeadline(t)
	return w.SetWriteDeadline(t)
}

// SetReadDeadline closes the connection at t: the session uses it to end
// the linger after a graceful close.
func (w *wsConn) SetReadDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if !t.IsZero() {
		w.timer = time.AfterFunc(time.Until(t), func() { _ = w.ws.CloseNow() })
	}
	return nil
}

// SetWriteDeadline bounds the writes that follow: a write still under way
// at t fails, and the connection is closed.
func (w *wsConn) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline = t
	switch {
	case t.IsZero():
		if w.wtimer != nil {
			w.wtimer.Stop()
		}
	case w.wtimer == nil:
		w.wtimer = time.AfterFunc(time.Until(t), w.writeDeadline)
	default:
		w.wtimer.Reset(time.Until(t))
	}
	return nil
}

// writeDeadline runs when the write deadline passes: a write still under
// way has stalled, and the connection is closed under it.
func (w *wsConn) writeDeadline() {
	w.mu.Lock()
	dl := w.deadline
	w.mu.Unlock()
	if dl.IsZero() || time.Now().Before(dl) || !w.writing.Load() {
		return // moved, or nothing is being written
	}
	w.timedOut.Store(true)
	_ = w.ws.CloseNow()
}
