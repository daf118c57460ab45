package server

import (
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Codec is a door's wire format, as the session core drives it. The core
// decides what to say and when (an answer, an error, an event, a
// heartbeat, a goodbye, the last words before a protocol error closes the
// connection); the codec says it in its door's format. Everything else of
// a session (ids, the client list, admission, in-flight limits,
// heartbeats, drain, close reasons, metrics) is the core's, written once.
//
// The Append methods append to the session's pending output and return
// the extended slice. The core calls them with the session's writer
// locked: they must only encode, never block or call back into the
// session.
//
// A door is a Codec plus a reader that decodes requests and hands them to
// the core (Session.Request, or Session.Send for a door whose own engine
// answers whole messages), plus a listener. See docs/architecture.md.
type Codec interface {
	// AppendResult appends the answer to request ref of method m.
	// A door that cannot express the payload returns an error, which is
	// then answered as one.
	AppendResult(b []byte, ref uint32, m *service.Method, payload []byte) ([]byte, error)
	// AppendError appends a request-level error answer to request ref.
	AppendError(b []byte, ref uint32, code wire.Code, msg string) []byte
	// Events reports whether the door carries events; only then may its
	// clients subscribe, and is AppendEvent called.
	Events() bool
	// AppendEvent appends an event of a subscribed topic.
	AppendEvent(b []byte, topic string, payload []byte) []byte
	// AppendGoodbye appends the server's goodbye, sent before a graceful
	// close (drain, kick, shutdown).
	AppendGoodbye(b []byte, reason string) []byte
	// AppendFatal appends the last words before the server closes the
	// connection over a protocol error (code closes the connection).
	AppendFatal(b []byte, code wire.Code, msg string) []byte
	// Heartbeats reports whether the door has heartbeats. A session of a
	// door without them is closed after the idle timeout instead of
	// missed heartbeats, and Ping is never called.
	Heartbeats() bool
	// Ping sends a heartbeat at now.
	Ping(now time.Time)
	// Wake makes sure a reader runs: the session is closing or draining,
	// and a door that parks idle connections without a reader must start
	// one so that it sees the end. Other doors do nothing.
	Wake()
	// Ordered reports whether answers must keep the order of requests (a
	// door without request ids): requests that are not inline are then
	// served one at a time on the reader instead of concurrently.
	Ordered() bool
}
