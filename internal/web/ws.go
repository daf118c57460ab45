package web

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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/internal/httpguard"
	"github.com/nexo-project/nexo/internal/jsonrpc"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The WebSocket door: JSON-RPC 2.0, one message per text message, on the
// server's session core. Its transport (coder/websocket), reader and
// heartbeats (WebSocket pings) live here; the session, admission and
// output are the core's.

// Door names of the web door.
const (
	DoorWS   = "ws"   // JSON-RPC over WebSocket: sessions, listed as clients
	DoorHTTP = "http" // JSON-RPC over POST /rpc: stateless, never listed
	// DoorWeb is the listener that serves both, and the GUI: its
	// connections and refused HTTP requests are counted under it.
	DoorWeb = "web"
)

// Welcome is the first message of a WebSocket session, sent as the
// notification event.welcome: the equivalent of the native WELCOME.
type Welcome struct {
	ClientID    uint64 `json:"client_id"`
	Server      string `json:"server"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
	MaxFrame    int    `json:"max_frame"`
	Admin       bool   `json:"admin"` // the session may use admin methods and sees remote addresses
}

// wsDoor serves /ws.
type wsDoor struct {
	srv   *server.Server
	rpc   *jsonrpc.RPC
	guard *httpguard.Policy
	log   *slog.Logger
}

// serve upgrades an HTTP request to a WebSocket session that carries one
// JSON-RPC message per text message. The session gets a client id, is
// listed with door "ws", receives the events it subscribes to as
// notifications, and is watched by heartbeats (WebSocket pings). The
// optional query parameter name names the client; the token comes as
// "Authorization: Bearer" or, since browsers cannot set headers on a
// WebSocket, as the query parameter token, and is checked by the server's
// one Authenticate. A wrong or missing token is refused with 401 before the
// upgrade (429 once the address is over its failure limit). The listener
// must be the server's (Server.Listener), which admits connections.
func (d *wsDoor) serve(w http.ResponseWriter, r *http.Request) {
	if d.guard.Foreign(r) {
		// Browsers let any page open a WebSocket anywhere: the Origin, its
		// scheme, host and port, is what tells the GUI from another site.
		d.srv.Rejected(DoorWS)
		d.log.Info("websocket refused: foreign origin", slog.String("remote", r.RemoteAddr), slog.String("origin", r.Header.Get("Origin")))
		http.Error(w, "WebSockets from another origin's page are refused", http.StatusForbidden)
		return
	}
	token, _ := server.RequestToken(r)
	admin, err := d.srv.Authenticate(r.RemoteAddr, token, DoorWS)
	if err != nil {
		if errors.Is(err, server.ErrAuthLimit) {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="nexo"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	name := r.URL.Query().Get("name")
	if len(name) > wire.MaxNameLen {
		http.Error(w, "name over 64 bytes", http.StatusBadRequest)
		return
	}
	if !d.srv.Accepting() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	// The connection was admitted when the web door's listener accepted it
	// (server.Listener): it counts against the limits once, whatever it
	// carries. The origin was checked above, scheme included, which Accept's own
	// check (host only) does not do.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		// Accept has answered (426 without an upgrade).
		d.srv.Rejected(DoorWS)
		d.log.Info("websocket refused", slog.String("remote", r.RemoteAddr), slog.String("origin", r.Header.Get("Origin")), slog.Any("err", err))
		return
	}
	d.srv.Accepted(DoorWS)
	cfg := d.srv.Config()
	c.SetReadLimit(int64(cfg.MaxFrame))
	wc := &wsConn{ws: c, remote: addrOf(r.RemoteAddr), done: make(chan struct{})}
	sess := d.srv.NewSession(wc, server.SessionOptions{Door: DoorWS, Name: name, Admin: admin, Identity: server.RequestIdentity(r)},
		func(h *server.Session) server.Codec { return &wsCodec{c: wc, sess: h, heartbeat: cfg.Heartbeat} })
	welcome, _ := json.Marshal(Welcome{ // numbers, strings and a bool always marshal
		ClientID: sess.ID(), Server: "nexo/" + cfg.Version, HeartbeatMS: cfg.Heartbeat.Milliseconds(),
		MaxFrame: cfg.MaxFrame, Admin: admin,
	})
	sess.Queue(appendNotification(nil, "event.welcome", welcome))
	sess.Register()
	sess.Flush()
	sess.End(d.read(wc, sess, cfg.HandshakeTimeout))
}

// monitorTap feeds the server's monitor stream (sys.monitor) from the
// JSON-RPC engine: the calls of /ws and POST /rpc alike.
type monitorTap struct{ srv *server.Server }

// Watching asks the server whether the call is watched.
func (t monitorTap) Watching(c *service.Caller, method string) (watched, frames bool) {
	if c == nil {
		return false, false
	}
	return t.srv.Watching(c, method)
}

// Watched gives the server a watched call.
func (t monitorTap) Watched(c *service.Caller, call *jsonrpc.TapCall) {
	t.srv.Watched(c, server.WatchedCall{Method: call.Method, Start: call.Start, Params: call.Params, Result: call.Result,
		Code: call.Code, Message: call.Message, Request: call.Request, Answer: call.Answer})
}

// addrOf parses a remote address as HTTP gives it.
func addrOf(remote string) net.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

// read is a WebSocket session's reader. A message that is one call of an
// inline method is answered here; any other runs on a goroutine of its
// own, so that a slow call does not hold back the others; answers are
// written as they are ready, in any order, as JSON-RPC allows.
//
// A message that has begun must be whole within msgTimeout, fragmented or
// not (a peer dripping one frame a second, while it answers pings, would
// hold the connection forever): one timer per connection, armed while a
// message is read, closes it with 1008. A text message that is not UTF-8
// closes with 1007, a binary one with 1003, and a frame that breaks the
// WebSocket protocol (an unmasked frame, say) with 1002.
func (d *wsDoor) read(wc *wsConn, sess *server.Session, msgTimeout time.Duration) error {
	var buf bytes.Buffer // the message being handled, reused when it was small
	caller, ctx := sess.Caller(), sess.Context()
	slow := time.AfterFunc(time.Hour, func() {
		wc.fatal(sess, websocket.StatusPolicyViolation, wire.CodeBadFrame, "a message must arrive whole within "+msgTimeout.String())
	})
	slow.Stop()
	defer slow.Stop()
	for {
		// No context to watch: closing the session closes the WebSocket,
		// which ends a Read, and a context would cost a callback per message.
		typ, r, err := wc.ws.Reader(context.Background())
		if err != nil {
			return wc.readFailed(sess, err)
		}
		if buf.Cap() > keepMessage {
			buf = bytes.Buffer{}
		}
		buf.Reset()
		slow.Reset(msgTimeout)
		_, err = buf.ReadFrom(r)
		if !slow.Stop() && wc.failed.Load() {
			return errSlowMessage // the deadline passed as it ended: it was refused
		}
		if err != nil {
			return wc.readFailed(sess, err)
		}
		msg := buf.Bytes()
		sess.Received(len(msg))
		if typ != websocket.MessageText {
			wc.fatal(sess, websocket.StatusUnsupportedData, wire.CodeBadFrame, "send JSON-RPC as text messages")
			return errBinaryMessage
		}
		if !utf8.Valid(msg) {
			wc.fatal(sess, websocket.StatusInvalidFramePayloadData, wire.CodeBadFrame, "a text message must be UTF-8")
			return errInvalidUTF8
		}
		sess.Hold()
		if code, text := sess.Admit(false, 0); code != 0 {
			sess.Send(lineOf(d.rpc.Refuse(caller, msg, code, text)))
		} else if out, t, ok := d.rpc.HandleInline(ctx, caller, msg); ok {
			sess.Send(lineOf(out, t))
		} else if code, text := sess.Admit(true, len(msg)); code != 0 {
			sess.Send(lineOf(d.rpc.Refuse(caller, msg, code, text)))
		} else {
			msg := bytes.Clone(msg) // buf is the next message's
			go func() {
				defer sess.Done(len(msg))
				sess.Send(lineOf(d.rpc.Handle(ctx, caller, msg)))
			}()
		}
		sess.Unhold()
	}
}

// lineOf ends an answer with the newline that separates messages in a
// WebSocket session's output (see wsConn.Write).
func lineOf(out []byte, t jsonrpc.Tally) ([]byte, int, int) {
	if out != nil {
		out = append(out, '\n')
	}
	return out, t.Calls, t.Errors
}

// Errors that end a WebSocket session.
var (
	errBinaryMessage = errors.New("binary WebSocket message")
	errInvalidUTF8   = errors.New("WebSocket text message not UTF-8")
	errSlowMessage   = errors.New("WebSocket message not whole in time")
)

// readFailed handles the error that ended a read: a normal close by the
// client becomes io.EOF, which the session core takes for the client
// closing its side; our own close passes through; anything else broke the
// protocol, and the peer is told so before the close (1002, or 1009 for a
// message over the max frame, which the WebSocket library has said
// already).
func (wc *wsConn) readFailed(sess *server.Session, err error) error {
	switch st := websocket.CloseStatus(err); {
	case st == websocket.StatusNormalClosure, st == websocket.StatusGoingAway, st == websocket.StatusNoStatusRcvd:
		return io.EOF
	case st != -1, errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return err
	}
	if _, gone := errors.AsType[*net.OpError](err); gone || errors.Is(err, syscall.ECONNRESET) {
		return err // the network, not the peer's frames: a reset, a dead socket
	}
	// The library has no error value for a message over its read limit,
	// only this text; it has sent 1009 itself.
	if strings.Contains(err.Error(), "read limited at") {
		wc.fatal(sess, websocket.StatusMessageTooBig, wire.CodeFrameTooLarge, "message over the max frame")
		return err
	}
	wc.fatal(sess, websocket.StatusProtocolError, wire.CodeBadFrame, "WebSocket protocol error")
	return err
}

// fatal ends the session over a protocol error, once: the close frame
// says status and reason.
func (wc *wsConn) fatal(sess *server.Session, status websocket.StatusCode, code wire.Code, reason string) {
	if !wc.failed.CompareAndSwap(false, true) {
		return
	}
	wc.setClose(status, reason)
	sess.Fatal(code, reason)
}

// keepMessage is the largest message buffer a WebSocket reader keeps for
// the next message.
const keepMessage = 64 << 10

// wsCodec is the WebSocket door's codec: JSON-RPC notifications for events
// and the goodbye, close frames for the end, WebSocket pings for
// heartbeats. Answers are whole JSON-RPC messages made by the JSON-RPC
// engine and sent with Session.Send, so AppendResult and AppendError are
// never called by the core.
type wsCodec struct {
	c         *wsConn
	sess      *server.Session
	heartbeat time.Duration
}

// AppendResult appends a JSON-RPC result with a numeric id.
func (w *wsCodec) AppendResult(b []byte, ref uint32, _ *service.Method, payload []byte) ([]byte, error) {
	if !json.Valid(payload) {
		return b, service.ErrBadPayload
	}
	b = append(b, `{"jsonrpc":"2.0","result":`...)
	b = append(b, payload...)
	b = append(b, `,"id":`...)
	b = strconv.AppendUint(b, uint64(ref), 10)
	return append(b, "}\n"...), nil
}

// AppendError appends a JSON-RPC error with a numeric id.
func (w *wsCodec) AppendError(b []byte, ref uint32, code wire.Code, msg string) []byte {
	out, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": ref,
		"error": map[string]any{"code": jsonrpc.ErrorCode(code), "message": msg, "data": map[string]string{"name": code.String()}}})
	return append(append(b, out...), '\n')
}

// Events is true: events are notifications.
func (w *wsCodec) Events() bool { return true }

// AppendEvent appends the notification event.<topic>.
func (w *wsCodec) AppendEvent(b []byte, topic string, payload []byte) []byte {
	return appendNotification(b, "event."+topic, payload)
}

// AppendGoodbye appends the notification event.goodbye and makes the
// close that follows say the reason, with 1001 (going away).
func (w *wsCodec) AppendGoodbye(b []byte, reason string) []byte {
	w.c.setClose(websocket.StatusGoingAway, reason)
	p, _ := json.Marshal(map[string]string{"reason": reason}) // a string map always marshals
	return appendNotification(b, "event.goodbye", p)
}

// AppendFatal makes the close that follows say msg, with the status the
// reader chose (1008, policy violation, unless it chose one).
func (w *wsCodec) AppendFatal(b []byte, _ wire.Code, msg string) []byte {
	w.c.setCloseIfUnset(websocket.StatusPolicyViolation, msg)
	return b
}

// Heartbeats is true: WebSocket pings.
func (w *wsCodec) Heartbeats() bool { return true }

// Ping sends a WebSocket ping; its pong counts as a sign of life and gives
// the round trip. Browsers answer pings by themselves.
func (w *wsCodec) Ping(now time.Time) {
	go func() {
		ctx, cancel := context.WithTimeout(w.sess.Context(), w.heartbeat)
		defer cancel()
		if w.c.ws.Ping(ctx) == nil {
			w.sess.Pong(time.Since(now))
		}
	}()
}

// Wake does nothing: a WebSocket session always has its reader.
func (w *wsCodec) Wake() {}

// Ordered is false: JSON-RPC answers carry their ids.
func (w *wsCodec) Ordered() bool { return false }

// appendNotification appends a JSON-RPC notification and the newline that
// ends every message in a WebSocket session's output.
func appendNotification(b []byte, method string, params []byte) []byte {
	b = append(b, `{"jsonrpc":"2.0","method":"`...)
	b = append(b, method...) // topics are plain ASCII names
	b = append(b, `","params":`...)
	b = append(b, params...)
	return append(b, "}\n"...)
}

// wsConn lets a session's batch writer write to a WebSocket: each
// newline-terminated JSON message of a batch becomes one text message.
// Reads go through the websocket.Conn directly.
type wsConn struct {
	ws     *websocket.Conn
	remote net.Addr
	done   chan struct{} // closed once the connection is closed
	once   sync.Once

	mu          sync.Mutex
	deadline    time.Time            // guarded by mu: write deadline
	closeStatus websocket.StatusCode // guarded by mu: the status CloseWrite closes with; 0: normal closure
	closeReason string               // guarded by mu
	timer       *time.Timer          // guarded by mu: closes the connection at the read deadline
	wtimer      *time.Timer          // guarded by mu: fires at the write deadline

	writing  atomic.Bool // a Write is under way
	timedOut atomic.Bool // a Write outlived its deadline and the connection was closed
	failed   atomic.Bool // a protocol error ends the session: its close is said once
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

// Read waits until the connection is closed, and reports EOF: the session
// reads messages from the websocket.Conn, and only the linger after a
// last answer reads here, to wait for the close handshake.
func (w *wsConn) Read([]byte) (int, error) {
	<-w.done
	return 0, io.EOF
}

func (w *wsConn) setClose(code websocket.StatusCode, reason string) {
	w.mu.Lock()
	w.closeStatus, w.closeReason = code, reason
	w.mu.Unlock()
}

func (w *wsConn) setCloseIfUnset(code websocket.StatusCode, reason string) {
	w.mu.Lock()
	if w.closeStatus == 0 {
		w.closeStatus, w.closeReason = code, reason
	}
	w.mu.Unlock()
}

// CloseWrite starts the WebSocket closing handshake with the status and
// reason set before (a goodbye, a fatal error), or a normal closure. The
// batch writer calls it, under its lock, once everything before it is
// written: the handshake, which waits up to 5s for the peer's close, runs
// on a goroutine of its own. Read returns once it is over.
func (w *wsConn) CloseWrite() error {
	w.mu.Lock()
	code, reason := w.closeStatus, w.closeReason
	w.mu.Unlock()
	if code == 0 {
		code = websocket.StatusNormalClosure
	}
	if len(reason) > 120 { // a close frame's reason fits in 123 bytes
		reason = reason[:120]
	}
	go func() {
		_ = w.ws.Close(code, reason) // errors mean the peer is gone already
		w.once.Do(func() { close(w.done) })
	}()
	return nil
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
	w.once.Do(func() { close(w.done) })
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
		w.timer = time.AfterFunc(time.Until(t), func() { _ = w.Close() })
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
