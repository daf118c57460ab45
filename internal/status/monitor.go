package status

import (
	"encoding/json"
	"time"
)

// MonitorEvent is one event of the monitor stream (sys.monitor): a request
// and its answer as they passed through the server, decoded. An event
// with Lost set is a notice instead: that many events were dropped since
// the last notice (the watcher's buffer was full, or an event would not
// fit its connection's max frame); its JSON has only time and lost,
// {"time":"...","lost":N}, so that it decodes as a MonitorEvent too.
type MonitorEvent struct {
	// Time is when the request arrived (for a notice: when it was sent).
	Time time.Time `json:"time"`
	// Lost is the number of events dropped since the last notice.
	Lost uint64 `json:"lost,omitempty"`

	// Client is the client's id; 0 for POST /rpc, whose callers have no
	// session.
	Client uint64 `json:"client"`
	Door   string `json:"door"`
	// Method is the method the request ran (a legacy SUMA is math.add),
	// or the name the client sent when no method has it: as it is when it
	// could be a method's (1 to 255 bytes of printable ASCII), else quoted
	// as a Go string, everything but printable ASCII escaped, and cut to
	// 255 bytes with "..." after its quote.
	Method string `json:"method"`
	// Params are the request's params as JSON, when they have a JSON form
	// of at most 4 KiB; ParamsBase64 is otherwise the start (up to 512
	// bytes) of the payload. ParamsLen is the whole payload's length in
	// bytes: the binary payload on the binary doors, the params' JSON
	// text on the JSON doors.
	Params       json.RawMessage `json:"params,omitempty"`
	ParamsBase64 []byte          `json:"params_base64,omitempty"`
	ParamsLen    int             `json:"params_len"`
	// Result, ResultBase64 and ResultLen are the answer's payload in the
	// same way, when the request succeeded.
	Result       json.RawMessage `json:"result,omitempty"`
	ResultBase64 []byte          `json:"result_base64,omitempty"`
	ResultLen    int             `json:"result_len,omitempty"`
	// Error is the error answered, when the request failed.
	Error *MonitorError `json:"error,omitempty"`
	// DurationUS is how long the server took, from reading the request
	// to encoding its answer, in microseconds.
	DurationUS float64 `json:"duration_us"`
	// Frames are the request and answer as they were on the wire, for a
	// watcher that asked for them.
	Frames *MonitorFrames `json:"frames,omitempty"`
}

// MonitorError is the error a request was answered with.
type MonitorError struct {
	Code uint16 `json:"code"` // the protocol's code (wire.Code)
	Name string `json:"name"` // its name, such as OVERFLOW
	// Message is the message answered, cut to 512 bytes (on a
	// character's boundary, "..." ending it). It is not escaped: it may
	// hold a client's control characters.
	Message string `json:"message"`
}

// MonitorFrames are a request and its answer as they were on the wire:
// a native REQUEST frame and its RESPONSE or ERROR frame, a legacy packet
// and its reply line, a JSON-RPC call and its response (as one call of a
// batch is answered: within the batch's array). Each holds at most 512
// bytes; the Len fields give the whole length.
type MonitorFrames struct {
	Request    []byte `json:"request"`
	RequestLen int    `json:"request_len"`
	// Answer is empty for a JSON-RPC notification, which is not answered.
	Answer    []byte `json:"answer,omitempty"`
	AnswerLen int    `json:"answer_len"`
	// Order is the byte order of the legacy packet's integers, which the
	// client chose: "little-endian" or "big-endian". Empty on other doors.
	Order string `json:"order,omitempty"`
}
