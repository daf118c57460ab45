package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/nexo-project/nexo/internal/exactjson"
)

// Frame is one decoded frame. A Frame returned by [Reader.ReadFrame] borrows
// its Body from the reader: it is valid until the next call.
type Frame struct {
	Type  Type
	Flags Flags
	ID    uint32
	Body  []byte
}

// Request is the decoded body of a REQUEST frame. Method and Payload alias
// the frame's body.
type Request struct {
	ID          uint32
	HasDeadline bool
	Deadline    uint32 // milliseconds from the moment the server read the frame
	// Trace is the caller's trace context (FlagTrace): TraceLen bytes,
	// trace id, parent span id and trace flags; nil without the flag.
	Trace   []byte
	Method  []byte
	Payload []byte
}

// ParseRequest decodes the body of a REQUEST frame.
func ParseRequest(f Frame) (Request, error) {
	req := Request{ID: f.ID}
	b := f.Body
	if f.Flags&FlagDeadline != 0 {
		if len(b) < 4 {
			return req, newError(CodeBadFrame, "REQUEST too short for its deadline")
		}
		req.HasDeadline = true
		req.Deadline = binary.BigEndian.Uint32(b)
		b = b[4:]
	}
	if f.Flags&FlagTrace != 0 {
		if len(b) < TraceLen {
			return req, newError(CodeBadFrame, "REQUEST too short for its trace context")
		}
		req.Trace = b[:TraceLen:TraceLen]
		b = b[TraceLen:]
	}
	if len(b) < 1 {
		return req, newError(CodeBadFrame, "REQUEST without method length")
	}
	n := int(b[0])
	if n == 0 || len(b) < 1+n {
		return req, newError(CodeBadFrame, "REQUEST method length "+strconv.Itoa(n)+" does not fit the body")
	}
	req.Method = b[1 : 1+n]
	for _, c := range req.Method {
		if c < 0x21 || c > 0x7e {
			return req, newError(CodeBadFrame, "REQUEST method is not printable ASCII")
		}
	}
	req.Payload = b[1+n:]
	return req, nil
}

// ParseError decodes the body of an ERROR frame.
func ParseError(body []byte) (*Error, error) {
	if len(body) < 2 {
		return nil, newError(CodeBadFrame, "ERROR body shorter than its code")
	}
	return &Error{Code: Code(binary.BigEndian.Uint16(body)), Msg: string(body[2:])}, nil
}

// ParseEvent decodes the body of an EVENT frame.
func ParseEvent(body []byte) (topic, payload []byte, err error) {
	if len(body) < 1 || body[0] == 0 || len(body) < 1+int(body[0]) {
		return nil, nil, newError(CodeBadFrame, "EVENT topic does not fit the body")
	}
	n := int(body[0])
	return body[1 : 1+n], body[1+n:], nil
}

// validate checks what the header and body of f must satisfy for its
// type; extra are the extension flags the connection agreed to.
func (f Frame) validate(extra Flags) error {
	if !f.Type.Valid() {
		return newError(CodeBadFrame, "unknown frame type "+strconv.Itoa(int(f.Type)))
	}
	if f.Flags&^(knownFlags|extra) != 0 {
		return newError(CodeBadFrame, "unknown flag bits 0x"+strconv.FormatUint(uint64(f.Flags&^(knownFlags|extra)), 16))
	}
	if f.Flags&(FlagDeadline|FlagTrace) != 0 && f.Type != TypeRequest {
		return newError(CodeBadFrame, "DEADLINE or TRACE flag on a "+f.Type.String()+" frame")
	}
	switch f.Type {
	case TypeRequest:
		_, err := ParseRequest(f)
		return err
	case TypeError:
		if len(f.Body) < 2 {
			return newError(CodeBadFrame, "ERROR body shorter than its code")
		}
	case TypePing, TypePong:
		if len(f.Body) > MaxPingBody {
			return newError(CodeBadFrame, f.Type.String()+" body over 64 bytes")
		}
	case TypeEvent:
		_, _, err := ParseEvent(f.Body)
		return err
	}
	return nil
}

// StartFrame appends a header for a frame whose body the caller appends
// next, and returns the offset to pass to [FinishFrame]. This lets a handler
// write its payload straight into an output buffer.
func StartFrame(dst []byte, t Type, flags Flags, id uint32) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, Version, byte(t), byte(flags>>8), byte(flags),
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	return dst, start
}

// FinishFrame writes the length field of the frame that starts at start.
func FinishFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendFrame appends a whole frame with the given body.
func AppendFrame(dst []byte, t Type, flags Flags, id uint32, body []byte) []byte {
	dst, start := StartFrame(dst, t, flags, id)
	dst = append(dst, body...)
	return FinishFrame(dst, start)
}

// AppendRequest appends a REQUEST without a deadline. The method must be 1
// to 255 bytes of printable ASCII; the caller checks that (see [CheckMethod]).
func AppendRequest(dst []byte, id uint32, method string, payload []byte) []byte {
	dst, start := StartFrame(dst, TypeRequest, 0, id)
	dst = append(dst, byte(len(method)))
	dst = append(dst, method...)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// AppendRequestDeadline appends a REQUEST with the DEADLINE flag: the server
// answers TIMEOUT once deadlineMS milliseconds have passed since it read it.
func AppendRequestDeadline(dst []byte, id uint32, deadlineMS uint32, method string, payload []byte) []byte {
	dst, start := StartFrame(dst, TypeRequest, FlagDeadline, id)
	dst = binary.BigEndian.AppendUint32(dst, deadlineMS)
	dst = append(dst, byte(len(method)))
	dst = append(dst, method...)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// AppendRequestFlags appends a REQUEST with any of the flags DEADLINE
// (deadlineMS is then sent) and TRACE (trace, TraceLen bytes, is then
// sent; only on a connection that agreed to it, see [FlagTrace]).
func AppendRequestFlags(dst []byte, id uint32, flags Flags, deadlineMS uint32, trace []byte, method string, payload []byte) []byte {
	dst, start := StartFrame(dst, TypeRequest, flags, id)
	if flags&FlagDeadline != 0 {
		dst = binary.BigEndian.AppendUint32(dst, deadlineMS)
	}
	if flags&FlagTrace != 0 {
		dst = append(dst, trace[:TraceLen]...)
	}
	dst = append(dst, byte(len(method)))
	dst = append(dst, method...)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// CheckMethod reports whether name can travel as a method or event topic.
func CheckMethod(name string) error {
	if len(name) == 0 || len(name) > 255 {
		return newError(CodeBadFrame, "method name must be 1 to 255 bytes")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x21 || c > 0x7e {
			return newError(CodeBadFrame, "method name must be printable ASCII")
		}
	}
	return nil
}

// AppendResponse appends a RESPONSE carrying payload.
func AppendResponse(dst []byte, id uint32, payload []byte) []byte {
	return AppendFrame(dst, TypeResponse, 0, id, payload)
}

// AppendError appends an ERROR frame.
func AppendError(dst []byte, id uint32, code Code, msg string) []byte {
	dst, start := StartFrame(dst, TypeError, 0, id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	dst = append(dst, msg...)
	return FinishFrame(dst, start)
}

// AppendEvent appends an EVENT frame (id 0). The topic follows the rules of
// [CheckMethod].
func AppendEvent(dst []byte, topic string, payload []byte) []byte {
	dst, start := StartFrame(dst, TypeEvent, 0, 0)
	dst = append(dst, byte(len(topic)))
	dst = append(dst, topic...)
	dst = append(dst, payload...)
	return FinishFrame(dst, start)
}

// AppendGoodbye appends a GOODBYE frame with an optional reason.
func AppendGoodbye(dst []byte, reason string) []byte {
	dst, start := StartFrame(dst, TypeGoodbye, 0, 0)
	dst = append(dst, reason...)
	return FinishFrame(dst, start)
}

// Hello is the body of a HELLO frame.
type Hello struct {
	Name  string `json:"name,omitempty"`
	Token string `json:"token,omitempty"`
	// Trace asks to send trace contexts on requests (FlagTrace), an
	// extension of version 1 that servers which do not know it ignore.
	Trace bool `json:"trace,omitempty"`
}

// Welcome is the body of a WELCOME frame.
type Welcome struct {
	ClientID    uint64 `json:"client_id"`
	Server      string `json:"server"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
	MaxFrame    int    `json:"max_frame"`
	// Trace grants a HELLO's Trace: the client may set FlagTrace.
	Trace bool `json:"trace,omitempty"`
}

// ParseHello decodes a HELLO body. An empty body is an empty object; any
// other body must be a JSON object whose name is at most 64 bytes.
func ParseHello(body []byte) (Hello, error) {
	var h Hello
	if len(bytes.TrimSpace(body)) == 0 {
		return h, nil
	}
	if b := bytes.TrimSpace(body); b[0] != '{' {
		return h, newError(CodeBadFrame, "HELLO body is not a JSON object")
	}
	err := exactjson.Unmarshal(body, exactjson.Member{Name: "name", Into: &h.Name},
		exactjson.Member{Name: "token", Into: &h.Token}, exactjson.Member{Name: "trace", Into: &h.Trace})
	if err != nil {
		return Hello{}, newError(CodeBadFrame, "HELLO body: "+err.Error())
	}
	if len(h.Name) > MaxNameLen {
		return h, newError(CodeBadFrame, "HELLO name over 64 bytes")
	}
	return h, nil
}

// ParseWelcome decodes a WELCOME body.
func ParseWelcome(body []byte) (Welcome, error) {
	var w Welcome
	err := exactjson.Unmarshal(body, exactjson.Member{Name: "client_id", Into: &w.ClientID},
		exactjson.Member{Name: "server", Into: &w.Server}, exactjson.Member{Name: "heartbeat_ms", Into: &w.HeartbeatMS},
		exactjson.Member{Name: "max_frame", Into: &w.MaxFrame}, exactjson.Member{Name: "trace", Into: &w.Trace})
	if err != nil {
		return Welcome{}, newError(CodeBadFrame, "WELCOME body: "+err.Error())
	}
	return w, nil
}

// AppendJSON appends a frame whose body is v as JSON: HELLO and WELCOME.
func AppendJSON(dst []byte, t Type, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return AppendFrame(dst, t, 0, 0, body), nil
}
