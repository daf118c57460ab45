package server

import "github.com/nexo-project/nexo/wire"

// closeReason says why a session ended. It is the cause of the session's
// context and is kept in the ring of recently closed sessions.
type closeReason uint32

const (
	reasonNone closeReason = iota
	reasonClientGoodbye
	reasonClientClosed
	reasonHeartbeatTimeout
	reasonIdleTimeout
	reasonBadFrame
	reasonUnsupportedVersion
	reasonFrameTooLarge
	reasonKicked
	reasonSlowConsumer
	reasonServerShutdown
	reasonReadError
	reasonWriteError
)

var reasonNames = [...]string{
	reasonNone:               "none",
	reasonClientGoodbye:      "client goodbye",
	reasonClientClosed:       "client closed",
	reasonHeartbeatTimeout:   "heartbeat timeout",
	reasonIdleTimeout:        "idle timeout",
	reasonBadFrame:           "bad frame",
	reasonUnsupportedVersion: "unsupported version",
	reasonFrameTooLarge:      "frame too large",
	reasonKicked:             "kicked",
	reasonSlowConsumer:       "slow consumer",
	reasonServerShutdown:     "server shutdown",
	reasonReadError:          "read error",
	reasonWriteError:         "write error",
}

// String returns the reason as shown in the client list and logs.
func (r closeReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Error lets a reason be a context cause.
func (r closeReason) Error() string { return "session closed: " + r.String() }

// reasonForCode maps a protocol error that closes a connection to a reason.
func reasonForCode(c wire.Code) closeReason {
	switch c {
	case wire.CodeUnsupportedVersion:
		return reasonUnsupportedVersion
	case wire.CodeFrameTooLarge:
		return reasonFrameTooLarge
	default:
		return reasonBadFrame
	}
}
