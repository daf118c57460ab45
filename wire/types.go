package wire

import (
	"errors"
	"strconv"
	"strings"
)

// Version is the protocol version this package speaks.
const Version = 1

// HeaderLen is the size of a frame header: length, version, type, flags, id.
const HeaderLen = 12

// DefaultMaxFrame is the default limit of a frame's length field (1 MiB).
const DefaultMaxFrame = 1 << 20

// MaxPingBody is the largest PING (and so PONG) body allowed.
const MaxPingBody = 64

// MaxNameLen is the largest client name a HELLO may carry, in bytes.
const MaxNameLen = 64

// Type is a frame type.
type Type uint8

// Frame types. The comment on each gives its body layout.
const (
	TypeHello    Type = 1 // client->server: JSON object, see Hello
	TypeWelcome  Type = 2 // server->client: JSON object, see Welcome
	TypeRequest  Type = 3 // [uint32 deadline ms if FlagDeadline] uint8 method len, method, payload
	TypeResponse Type = 4 // payload
	TypeError    Type = 5 // uint16 code, UTF-8 message
	TypePing     Type = 6 // 0..64 opaque bytes
	TypePong     Type = 7 // the PING's body, same id
	TypeEvent    Type = 8 // uint8 topic len, topic, payload; id 0
	TypeGoodbye  Type = 9 // optional UTF-8 reason
)

var typeNames = [...]string{
	TypeHello:    "HELLO",
	TypeWelcome:  "WELCOME",
	TypeRequest:  "REQUEST",
	TypeResponse: "RESPONSE",
	TypeError:    "ERROR",
	TypePing:     "PING",
	TypePong:     "PONG",
	TypeEvent:    "EVENT",
	TypeGoodbye:  "GOODBYE",
}

// Valid reports whether t is a frame type of version 1.
func (t Type) Valid() bool { return t >= TypeHello && t <= TypeGoodbye }

// String returns the type's name from the specification, such as "REQUEST".
func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Flags is the flags field of a frame header.
type Flags uint16

// FlagDeadline marks a REQUEST whose body starts with a uint32 deadline in
// milliseconds, counted from the moment the server reads the frame.
const FlagDeadline Flags = 0x0001

// FlagTrace marks a REQUEST that carries its caller's trace context: the
// body holds [TraceLen] bytes after the deadline (if any) and before the
// method length. It is an extension of version 1, valid only on a
// connection whose HELLO asked for it and whose WELCOME granted it
// (Hello.Trace, Welcome.Trace); everywhere else it is an unknown bit and
// BAD_FRAME, as version 1 says, so old clients and servers never see it.
const FlagTrace Flags = 0x0002

// TraceLen is the size of a REQUEST's trace context (FlagTrace): the W3C
// traceparent's fields of version 00 in binary, trace id (16 bytes),
// parent span id (8) and trace flags (1).
const TraceLen = 25

// knownFlags are the flag bits defined in version 1.
const knownFlags = FlagDeadline

// Code is an error code carried by an ERROR frame. Codes are stable and the
// list only grows. A Code is itself an error, so that
// errors.Is(err, wire.CodeOverflow) matches any *Error with that code.
type Code uint16

// Error codes, from the specification's table 1.4.
const (
	CodeBadFrame           Code = 1  // malformed frame; closes the connection
	CodeUnsupportedVersion Code = 2  // wrong protocol version; closes
	CodeUnauthorized       Code = 3  // bad or missing credentials; closes
	CodeUnknownMethod      Code = 4  // no such method
	CodeBadPayload         Code = 5  // the payload does not fit the method
	CodeDivisionByZero     Code = 6  // math.div by zero
	CodeOverflow           Code = 7  // int64 overflow
	CodeBusy               Code = 8  // too many requests or connections; retry later
	CodeShuttingDown       Code = 9  // the server is draining
	CodeTimeout            Code = 10 // the deadline passed
	CodeInternal           Code = 11 // a bug or unexpected failure in the server
	CodeFrameTooLarge      Code = 12 // length over the limit; closes
	CodeUnavailable        Code = 13 // no backend serves this method now
)

var codeNames = [...]string{
	CodeBadFrame:           "BAD_FRAME",
	CodeUnsupportedVersion: "UNSUPPORTED_VERSION",
	CodeUnauthorized:       "UNAUTHORIZED",
	CodeUnknownMethod:      "UNKNOWN_METHOD",
	CodeBadPayload:         "BAD_PAYLOAD",
	CodeDivisionByZero:     "DIVISION_BY_ZERO",
	CodeOverflow:           "OVERFLOW",
	CodeBusy:               "BUSY",
	CodeShuttingDown:       "SHUTTING_DOWN",
	CodeTimeout:            "TIMEOUT",
	CodeInternal:           "INTERNAL",
	CodeFrameTooLarge:      "FRAME_TOO_LARGE",
	CodeUnavailable:        "UNAVAILABLE",
}

// Known reports whether c is a code of version 1.
func (c Code) Known() bool { return c >= CodeBadFrame && c <= CodeUnavailable }

// MinApplicationCode is the first of the codes a service defines for its
// own errors: 1..999 are the protocol's (table 1.4 and its future
// growth), 1000..65535 are services' own, and every door carries them
// unchanged (the JSON doors as the same JSON-RPC code).
const MinApplicationCode Code = 1000

// Application reports whether c is a service's own code (1000..65535).
func (c Code) Application() bool { return c >= MinApplicationCode }

// Answerable reports whether a request may be answered with c and the
// connection kept: a known code that does not close the connection, or an
// application code.
func (c Code) Answerable() bool { return c.Known() && !c.ClosesConn() || c.Application() }

// String returns the code's name from the specification, such as "OVERFLOW".
func (c Code) String() string {
	if c.Known() {
		return codeNames[c]
	}
	return "CODE_" + strconv.Itoa(int(c))
}

// Error makes a Code usable as a sentinel error. It is the code's name, so
// that printing a Code shows the same text whether fmt sees an error or a
// Stringer.
func (c Code) Error() string { return c.String() }

// ClosesConn reports whether an ERROR with this code ends the connection.
func (c Code) ClosesConn() bool {
	switch c {
	case CodeBadFrame, CodeUnsupportedVersion, CodeUnauthorized, CodeFrameTooLarge:
		return true
	}
	return false
}

// ParseCode returns the code with the given name, such as "OVERFLOW", or
// "CODE_1001" for an application code (what String gives).
func ParseCode(name string) (Code, bool) {
	for c, n := range codeNames {
		if n != "" && n == name {
			return Code(c), true
		}
	}
	if digits, ok := strings.CutPrefix(name, "CODE_"); ok {
		n, err := strconv.ParseUint(digits, 10, 16)
		if c := Code(n); err == nil && c.Application() && c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// Error is a protocol error: an ERROR frame received from the peer, or a
// malformed frame detected locally (then Code says what to answer).
type Error struct {
	Code Code
	Msg  string
}

// Error returns the code's name and the message.
func (e *Error) Error() string {
	if e.Msg == "" {
		return "nexo: " + e.Code.String()
	}
	return "nexo: " + e.Code.String() + ": " + e.Msg
}

// Is makes errors.Is(err, code) true when err is an *Error with that code.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	return ok && c == e.Code
}

// Errorf-free helper for decoder errors; these paths are cold.
func newError(c Code, msg string) *Error { return &Error{Code: c, Msg: msg} }

// CodeOf returns the protocol code carried by err, and false when err carries
// none.
func CodeOf(err error) (Code, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	var c Code
	if errors.As(err, &c) {
		return c, true
	}
	return 0, false
}
