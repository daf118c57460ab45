// Package jsonrpc is the JSON-RPC 2.0 engine of nexo's web door: it runs
// JSON-RPC messages against the same service registry as the binary doors
// (spec section 3), and serves them over HTTP as POST /rpc. The WebSocket
// door runs the same engine on each message.
//
// Methods keep their native names and take JSON params through their
// service.JSONCodec. Errors use the standard JSON-RPC codes where they
// apply, and -32000 minus the native code otherwise, with the native name in
// data: {"code": -32006, "message": "...", "data": {"name": "DIVISION_BY_ZERO"}}.
package jsonrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/exactjson"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Standard JSON-RPC 2.0 error codes.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	// codeNativeBase minus a native code is that code's JSON-RPC code.
	codeNativeBase = -32000
)

// MaxBatch bounds the calls in one batch.
const MaxBatch = 1000

// RPC executes JSON-RPC 2.0 messages against a registry.
type RPC struct {
	reg     *service.Registry
	timeout time.Duration

	// Version is the server's version, in the rpc.discover document.
	Version string

	// Observe, when set, is told of every call answered: the method (nil
	// when it does not exist, or when the message is not a call at all,
	// then with BAD_FRAME), the result code (0 for success) and how long
	// it took. Set it before the first call.
	Observe func(m *service.Method, code wire.Code, d time.Duration)

	// Tracer, when set, makes each call a span, child of the trace
	// context its HTTP request carried (the traceparent header). Nil is
	// tracing off. Set it before the first call.
	Tracer trace.Tracer

	// Tap, when set, is the server's monitor stream: it is asked about
	// every call, and given those it watches once they are answered. Set
	// it before the first call.
	Tap Tap
}

// Tap is the server's monitor stream (sys.monitor), as the engine feeds
// it.
type Tap interface {
	// Watching reports whether a call of caller's to method is watched,
	// and whether with its messages. It is asked before every call, so it
	// must cost next to nothing while nobody watches.
	Watching(caller *service.Caller, method string) (watched, frames bool)
	// Watched is given a watched call once it is answered. It must copy
	// what it keeps.
	Watched(caller *service.Caller, c *TapCall)
}

// TapCall is a watched call and its answer.
type TapCall struct {
	Method  string
	Start   time.Time       // when the engine began the call
	Params  json.RawMessage // nil: the call had none
	Result  json.RawMessage // when Code is 0
	Code    wire.Code       // 0: it succeeded; else the error's native code
	Message string          // the error's message
	// Request and Answer are the call and its response as JSON-RPC
	// messages, when Watching asked for them: the call as it came (one
	// element of a batch), its response as it goes out; Answer is nil for
	// a notification.
	Request, Answer []byte
}

// Tally counts what one message held.
type Tally struct {
	Calls  int // calls and notifications
	Errors int // calls answered with an error
}

// NewRPC returns an RPC for reg; timeout bounds each call (0: 30s).
func NewRPC(reg *service.Registry, timeout time.Duration) *RPC {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &RPC{reg: reg, timeout: timeout}
}

// request is one JSON-RPC call, as parseCall found it valid. ID is nil
// when absent (a notification).
type request struct {
	Method string
	Params json.RawMessage
	ID     json.RawMessage
}

// envelope is the members of a call (parseEnvelope), for parseCall to
// check; nil for a member that is not there.
type envelope struct {
	JSONRPC *string
	Method  *string
	Params  json.RawMessage
	ID      json.RawMessage
}

// rpcError is the error member of a response.
type rpcError struct {
	Code    int        `json:"code"`
	Message string     `json:"message"`
	Data    *errorData `json:"data,omitempty"`
}

type errorData struct {
	Name string `json:"name"`
}

// response is one JSON-RPC response; exactly one of Result and Error is set.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
	// encoded is the response as it goes out when the Tap needed it
	// first (tapped); nil: not encoded yet.
	encoded []byte
}

var null = json.RawMessage("null")

// Handle executes one message: a call, a notification or a batch. It
// returns the response to send, or nil when there is none (notifications
// only), and what the message held.
func (r *RPC) Handle(ctx context.Context, caller *service.Caller, msg []byte) ([]byte, Tally) {
	msg = bytes.TrimSpace(msg)
	if len(msg) > 0 && msg[0] == '[' {
		return r.batch(msg, func(m json.RawMessage) (response, bool) { return r.call(ctx, caller, m) })
	}
	return answer(r.call(ctx, caller, msg))
}

// HandleInline runs msg at once when it is one valid call (or
// notification) of an inline method, cheap and never blocking, and reports
// whether it did; its answer is then what Handle would give. Anything else
// (batches, other methods, malformed messages) is left alone: the door
// passes it to Handle on a goroutine of its own. A door's reader uses it
// to answer cheap calls without a goroutine, parsing each message once.
func (r *RPC) HandleInline(ctx context.Context, caller *service.Caller, msg []byte) ([]byte, Tally, bool) {
	msg = bytes.TrimSpace(msg)
	if len(msg) == 0 || msg[0] != '{' {
		return nil, Tally{}, false
	}
	req, _, ok := parseCall(msg)
	if !ok {
		return nil, Tally{}, false
	}
	if m := r.reg.Get(req.Method); m == nil || !m.Inline {
		return nil, Tally{}, false
	}
	out, t := answer(r.runCall(ctx, caller, req, msg))
	return out, t, true
}

// Refuse answers every call caller sent in msg with the native code,
// without running any: it is how a door says BUSY or SHUTTING_DOWN.
// Notifications get nothing, as always.
func (r *RPC) Refuse(caller *service.Caller, msg []byte, code wire.Code, text string) ([]byte, Tally) {
	refuse := func(m json.RawMessage) (response, bool) {
		req, resp, ok := parseCall(m)
		if !ok {
			r.observe(nil, wire.CodeBadFrame, time.Now())
			return resp, true
		}
		start := time.Now()
		r.observe(r.reg.Get(req.Method), code, start) // counted as the method's, as a native door's refusal is
		resp = errorResponse(req.ID, ErrorCode(code), text, code.String())
		if r.Tap != nil {
			if watched, frames := r.Tap.Watching(caller, req.Method); watched {
				resp = r.tapped(caller, start, req, m, resp, frames)
			}
		}
		return resp, req.ID != nil
	}
	msg = bytes.TrimSpace(msg)
	if len(msg) > 0 && msg[0] == '[' {
		return r.batch(msg, refuse)
	}
	return answer(refuse(msg))
}

// batch parses a message, trimmed and beginning with '[', as a batch and
// answers each call with do, which reports false for a notification.
func (r *RPC) batch(msg []byte, do func(json.RawMessage) (response, bool)) ([]byte, Tally) {
	var t Tally
	one := func(m json.RawMessage) (response, bool) {
		t.Calls++
		resp, ok := do(m)
		if resp.Error != nil {
			t.Errors++
		}
		return resp, ok
	}
	// Counted before it is decoded: a batch of a million tiny
	// elements would cost far more than its bytes as raw messages.
	if countElements(msg, MaxBatch) > MaxBatch {
		return marshal(r.invalid(null, codeInvalidRequest, "invalid request: batch over 1000 calls", "")), Tally{1, 1}
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(msg, &batch); err != nil {
		return marshal(r.invalid(null, codeParseError, "parse error: "+err.Error(), "")), Tally{1, 1}
	}
	if len(batch) == 0 {
		return marshal(r.invalid(null, codeInvalidRequest, "invalid request: empty batch", "")), Tally{1, 1}
	}
	if len(batch) > MaxBatch {
		return marshal(r.invalid(null, codeInvalidRequest, "invalid request: batch over 1000 calls", "")), Tally{1, 1}
	}
	var out []response
	for _, m := range batch {
		if resp, ok := one(m); ok {
			out = append(out, resp)
		}
	}
	if len(out) == 0 {
		return nil, t
	}
	return marshalBatch(out), t
}

// answer is the answer to a message that was one call, given its
// response and whether it gets one (false for a notification).
func answer(resp response, ok bool) ([]byte, Tally) {
	t := Tally{Calls: 1}
	if resp.Error != nil {
		t.Errors = 1
	}
	if !ok {
		return nil, t
	}
	if resp.encoded != nil {
		return resp.encoded, t
	}
	return encode(resp), t
}

// resultPrefix begins the response to a call that succeeded.
const resultPrefix = `{"jsonrpc":"2.0","result":`

// succeeded is the response to a call that succeeded with result, encoded
// at once when encoding/json would write it as it is: after the result in
// buf when the codec appended it there (the room after it is the
// engine's), in a buffer of its own otherwise (a codec may return bytes
// that are not buf's, whose room is not the engine's to write).
func succeeded(result []byte, id json.RawMessage, buf []byte) response {
	var dst []byte
	if inside(result, buf) {
		dst = result[len(result):]
	} else {
		dst = make([]byte, 0, len(resultPrefix)+len(result)+len(id)+len(`,"id":}`+"\n"))
	}
	result = result[:len(result):len(result)]
	resp := response{JSONRPC: "2.0", Result: result, ID: id}
	if end, ok := appendResult(dst, result, id); ok {
		resp.encoded = end
	}
	return resp
}

// inside reports whether b is a slice of buf's array that ends where buf's
// room ends, as what was appended to buf[len:len] in place is.
func inside(b, buf []byte) bool {
	return len(b) > 0 && cap(buf) > 0 && &b[:cap(b)][cap(b)-1] == &buf[:cap(buf)][cap(buf)-1]
}

// encode is marshal(resp), without encoding/json for a result it would
// write as it is, with room for the newline a door may end it with.
func encode(resp response) []byte {
	if resp.encoded != nil {
		return resp.encoded
	}
	if resp.Error == nil {
		if b, ok := appendResult(make([]byte, 0, len(`{"jsonrpc":"2.0","result":,"id":}`+"\n")+len(resp.Result)+len(resp.ID)), resp.Result, resp.ID); ok {
			return b
		}
	}
	return marshal(resp)
}

// parseCall checks the envelope of one call. When it is not a valid call,
// ok is false and resp is the error to send: a parse error when msg is
// not JSON at all.
func parseCall(msg json.RawMessage) (req request, resp response, ok bool) {
	if req, ok := parseFast(msg); ok {
		return req, response{}, true
	}
	e, err := parseEnvelope(msg)
	if err != nil {
		if _, syntax := errors.AsType[*json.SyntaxError](err); syntax {
			return req, errorResponse(null, codeParseError, "parse error: not valid JSON", ""), false
		}
		return req, errorResponse(null, codeInvalidRequest, "invalid request: a call must be an object with jsonrpc, method, params and id", ""), false
	}
	req.Params, req.ID = e.Params, e.ID
	if e.Method != nil {
		req.Method = *e.Method
	}
	id := req.ID
	if id != nil && !validID(id) {
		return req, errorResponse(null, codeInvalidRequest, "invalid request: id must be a string, a number or null", ""), false
	}
	if id == nil {
		id = null // for errors about the message itself, which are always answered
	}
	switch {
	case e.JSONRPC == nil || *e.JSONRPC != "2.0":
		return req, errorResponse(id, codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`, ""), false
	case e.Method == nil:
		return req, errorResponse(id, codeInvalidRequest, `invalid request: "method" must be a string`, ""), false
	case len(req.Params) > 0 && req.Params[0] != '[' && req.Params[0] != '{':
		return req, errorResponse(id, codeInvalidRequest, "invalid request: params must be an array or an object", ""), false
	}
	return req, response{}, true
}

// parseEnvelope decodes the members of a call. Their names are
// case-sensitive, as JSON-RPC's are (exactjson): encoding/json alone
// would take "Method" for "method" and "ID" for "id", so that
// {"jsonrpC":"2.0","Method":""} was a notification, never answered,
// where it is an invalid request.
func parseEnvelope(msg json.RawMessage) (envelope, error) {
	var e envelope
	err := exactjson.Unmarshal(msg, exactjson.Member{Name: "jsonrpc", Into: &e.JSONRPC},
		exactjson.Member{Name: "method", Into: &e.Method}, exactjson.Member{Name: "params", Into: &e.Params},
		exactjson.Member{Name: "id", Into: &e.ID})
	if err != nil {
		return envelope{}, err
	}
	return e, nil
}

// call runs one call; ok is false for a notification (no response).
func (r *RPC) call(ctx context.Context, caller *service.Caller, msg json.RawMessage) (response, bool) {
	req, resp, ok := parseCall(msg)
	if !ok {
		r.observe(nil, wire.CodeBadFrame, time.Now())
		return resp, true
	}
	return r.runCall(ctx, caller, req, msg)
}

// runCall runs a parsed call, raw as it came; ok is false for a
// notification.
func (r *RPC) runCall(ctx context.Context, caller *service.Caller, req request, raw json.RawMessage) (response, bool) {
	id := req.ID
	if id == nil {
		id = null
	}
	if r.Tap != nil {
		if watched, frames := r.Tap.Watching(caller, req.Method); watched {
			start := time.Now()
			resp := r.run(ctx, caller, req.Method, req.Params, id)
			return r.tapped(caller, start, req, raw, resp, frames), req.ID != nil
		}
	}
	return r.run(ctx, caller, req.Method, req.Params, id), req.ID != nil
}

// tapped gives the Tap a watched call, raw as it came, and its answer,
// and returns the answer. With frames, the answer is encoded here, once:
// the Tap is shown the bytes that go out, and the message's encoding
// reuses them (answer, marshalBatch). Everything else is the engine's
// own, unmarshalled or answered already; the Tap copies what it keeps.
func (r *RPC) tapped(caller *service.Caller, start time.Time, req request, raw json.RawMessage, resp response, frames bool) response {
	c := &TapCall{Method: req.Method, Start: start, Params: req.Params, Result: resp.Result}
	if e := resp.Error; e != nil {
		c.Code, c.Message = wire.CodeInternal, e.Message
		if e.Data != nil {
			if code, ok := wire.ParseCode(e.Data.Name); ok {
				c.Code = code
			}
		}
	}
	if frames {
		c.Request = raw
		if req.ID != nil {
			resp.encoded = encode(resp)
			c.Answer = resp.encoded
		}
	}
	r.Tap.Watched(caller, c)
	return resp
}

// run runs one call, as a span when tracing is on.
func (r *RPC) run(ctx context.Context, caller *service.Caller, name string, params json.RawMessage, id json.RawMessage) response {
	if r.Tracer == nil {
		return r.serve(ctx, caller, name, params, id)
	}
	door := ""
	if caller != nil {
		door = caller.Door
	}
	sp := tracing.StartServer(ctx, r.Tracer, door, name)
	resp := r.serve(sp.Ctx, caller, name, params, id)
	if e := resp.Error; e != nil {
		code := wire.CodeInternal
		if e.Data != nil {
			if c, ok := wire.ParseCode(e.Data.Name); ok {
				code = c
			}
		}
		sp.End(code, e.Message)
	} else {
		sp.End(0, "")
	}
	return resp
}

// serve runs one call.
func (r *RPC) serve(ctx context.Context, caller *service.Caller, name string, params json.RawMessage, id json.RawMessage) response {
	start := time.Now()
	m := r.reg.Get(name)
	if m == nil && name == Discover {
		return r.discover(caller, params, id, start)
	}
	if m == nil || m.JSON == nil || (m.Hidden && !caller.Trusted()) {
		r.observe(nil, wire.CodeUnknownMethod, start)
		return errorResponse(id, codeMethodNotFound, methodNotFound(name), wire.CodeUnknownMethod.String())
	}
	if limit := m.JSON.ParamsLimit(); countElements(params, limit) > limit {
		r.observe(m, wire.CodeBadPayload, start)
		return errorResponse(id, codeInvalidParams, "invalid params: more than "+strconv.Itoa(limit)+" params", wire.CodeBadPayload.String())
	}
	payload, err := m.JSON.Params(params, nil)
	if err != nil {
		r.observe(m, wire.CodeBadPayload, start)
		return errorResponse(id, codeInvalidParams, err.Error(), wire.CodeBadPayload.String())
	}
	if !m.Inline { // inline methods never block: no timer for them
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	// One buffer for the method's answer and, after it, the response
	// that carries it (succeeded), when the answer is small.
	buf := make([]byte, 0, 128)
	out, err := m.Call(ctx, service.Request{Payload: payload, Caller: caller}, buf)
	if err == nil {
		var rest []byte // a new buffer, unless out leaves room after it
		if len(out) <= cap(buf)-64 {
			rest = buf[len(out):len(out)] // after out, if out is in buf
		}
		var result []byte
		if result, err = m.JSON.Result(out, rest); err == nil {
			r.observe(m, 0, start)
			return succeeded(result, id, buf)
		}
	}
	code := service.CodeOf(err)
	r.observe(m, code, start)
	msg := service.ErrorMessage(code, err)
	if code == wire.CodeUnknownMethod {
		msg = methodNotFound(name) // a method hidden from this caller looks absent
	}
	return errorResponse(id, ErrorCode(code), msg, code.String())
}

// discoverMethod is rpc.discover's name in metrics.
var discoverMethod = service.Method{Name: Discover}

// discover answers rpc.discover: the OpenRPC document of the methods the
// caller may call on the JSON doors. It takes no params.
func (r *RPC) discover(caller *service.Caller, params, id json.RawMessage, start time.Time) response {
	if p := bytes.TrimSpace(params); len(p) > 0 && string(p) != "[]" && string(p) != "{}" && string(p) != "null" {
		r.observe(&discoverMethod, wire.CodeBadPayload, start)
		return errorResponse(id, codeInvalidParams, "invalid params: rpc.discover takes none", wire.CodeBadPayload.String())
	}
	var ds []service.Described
	for _, d := range r.reg.Describe(caller.Trusted()) {
		if m := r.reg.Get(d.Name); m != nil && m.JSON != nil { // what the JSON doors can call
			ds = append(ds, d)
		}
	}
	doc, err := discover(ds, r.Version)
	if err != nil {
		r.observe(&discoverMethod, wire.CodeInternal, start)
		return errorResponse(id, ErrorCode(wire.CodeInternal), "internal error", wire.CodeInternal.String())
	}
	r.observe(&discoverMethod, 0, start)
	return response{JSONRPC: "2.0", Result: doc, ID: id}
}

// invalid is the answer to a message that is not a call (not JSON, not
// an object or batch of calls, an empty or oversized batch), counted as a
// malformed message: BAD_FRAME for no method.
func (r *RPC) invalid(id json.RawMessage, code int, msg, name string) response {
	r.observe(nil, wire.CodeBadFrame, time.Now())
	return errorResponse(id, code, msg, name)
}

func (r *RPC) observe(m *service.Method, code wire.Code, start time.Time) {
	if r.Observe != nil {
		r.Observe(m, code, time.Since(start))
	}
}

// ErrorCode is the JSON-RPC error code of a native code: the standard one
// where it applies, a service's own code (1000 and up) unchanged, -32000
// minus the native code otherwise.
func ErrorCode(code wire.Code) int {
	switch {
	case code == wire.CodeUnknownMethod:
		return codeMethodNotFound
	case code == wire.CodeBadPayload:
		return codeInvalidParams
	case code.Application():
		return int(code)
	}
	return codeNativeBase - int(code)
}

func errorResponse(id json.RawMessage, code int, msg, name string) response {
	e := &rpcError{Code: code, Message: msg}
	if name != "" {
		e.Data = &errorData{Name: name}
	}
	return response{JSONRPC: "2.0", Error: e, ID: id}
}

// validID reports whether a raw id is a string, a number or null.
func validID(id json.RawMessage) bool {
	switch id[0] {
	case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// marshalBatch is marshal(out), reusing the responses tapped encoded
// already: the elements of a JSON array encode as they do alone.
func marshalBatch(out []response) []byte {
	if !slices.ContainsFunc(out, func(r response) bool { return r.encoded != nil }) {
		return marshal(out)
	}
	b := []byte{'['}
	for i, resp := range out {
		if i > 0 {
			b = append(b, ',')
		}
		if resp.encoded == nil {
			resp.encoded = encode(resp)
		}
		b = append(b, resp.encoded...)
	}
	return append(b, ']')
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only raw results could fail, and codecs produce valid JSON
		b, _ = json.Marshal(errorResponse(null, codeNativeBase-int(wire.CodeInternal), "internal error", wire.CodeInternal.String()))
	}
	return b
}

// maxMethodLen is the longest method name any door accepts (the native
// frame's one-byte length).
const maxMethodLen = 255

// methodNotFound is the message of an unknown method. A name longer than
// any method's (255 bytes) is cut, so that a huge name is not sent back
// to its caller, several times larger once JSON escapes it.
func methodNotFound(name string) string {
	if len(name) > maxMethodLen {
		return "method not found: " + strings.ToValidUTF8(name[:maxMethodLen], "") + "..."
	}
	return "method not found: " + name
}
