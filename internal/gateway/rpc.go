// Package gateway is nexo's web door: JSON-RPC 2.0 over HTTP (POST /rpc)
// onto the same service registry as the binary doors (spec section 3).
//
// Methods keep their native names and take JSON params through their
// service.JSONCodec. Errors use the standard JSON-RPC codes where they
// apply, and -32000 minus the native code otherwise, with the native name in
// data: {"code": -32006, "message": "...", "data": {"name": "DIVISION_BY_ZERO"}}.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/nexo-project/nexo/internal/service"
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
}

// NewRPC returns an RPC for reg; timeout bounds each call (0: 30s).
func NewRPC(reg *service.Registry, timeout time.Duration) *RPC {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &RPC{reg: reg, timeout: timeout}
}

// request is one JSON-RPC call. ID is nil when absent (a notification).
type request struct {
	JSONRPC *string         `json:"jsonrpc"`
	Method  *string         `json:"method"`
	Params  json.RawMessage `json:"params"`
	ID      json.RawMessage `json:"id"`
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
}

var null = json.RawMessage("null")

// Handle executes one message: a call, a notification or a batch. It
// returns the response to send, or nil when there is none (notifications
// only).
func (r *RPC) Handle(ctx context.Context, caller *service.Caller, msg []byte) []byte {
	msg = bytes.TrimSpace(msg)
	if len(msg) > 0 && msg[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(msg, &batch); err != nil {
			return marshal(errorResponse(null, codeParseError, "parse error: "+err.Error(), ""))
		}
		if len(batch) == 0 {
			return marshal(errorResponse(null, codeInvalidRequest, "invalid request: empty batch", ""))
		}
		if len(batch) > MaxBatch {
			return marshal(errorResponse(null, codeInvalidRequest, "invalid request: batch over 1000 calls", ""))
		}
		var out []response
		for _, m := range batch {
			if resp, ok := r.call(ctx, caller, m); ok {
				out = append(out, resp)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return marshal(out)
	}
	if !json.Valid(msg) {
		return marshal(errorResponse(null, codeParseError, "parse error: not valid JSON", ""))
	}
	if resp, ok := r.call(ctx, caller, msg); ok {
		return marshal(resp)
	}
	return nil
}

// call runs one call; ok is false for a notification (no response).
func (r *RPC) call(ctx context.Context, caller *service.Caller, msg json.RawMessage) (response, bool) {
	var req request
	if err := json.Unmarshal(msg, &req); err != nil {
		return errorResponse(null, codeInvalidRequest, "invalid request: "+err.Error(), ""), true
	}
	id := req.ID
	if id != nil && !validID(id) {
		return errorResponse(null, codeInvalidRequest, "invalid request: id must be a string, a number or null", ""), true
	}
	if id == nil {
		id = null // for errors about the message itself, which are always answered
	}
	switch {
	case req.JSONRPC == nil || *req.JSONRPC != "2.0":
		return errorResponse(id, codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`, ""), true
	case req.Method == nil:
		return errorResponse(id, codeInvalidRequest, `invalid request: "method" must be a string`, ""), true
	case len(req.Params) > 0 && req.Params[0] != '[' && req.Params[0] != '{':
		return errorResponse(id, codeInvalidRequest, "invalid request: params must be an array or an object", ""), true
	}
	resp := r.run(ctx, caller, *req.Method, req.Params, id)
	return resp, req.ID != nil
}

func (r *RPC) run(ctx context.Context, caller *service.Caller, name string, params json.RawMessage, id json.RawMessage) response {
	m := r.reg.Get(name)
	if m == nil || m.JSON == nil || (m.Hidden && !caller.Trusted()) {
		return errorResponse(id, codeMethodNotFound, "method not found: "+name, wire.CodeUnknownMethod.String())
	}
	payload, err := m.JSON.Params(params, nil)
	if err != nil {
		return errorResponse(id, codeInvalidParams, err.Error(), wire.CodeBadPayload.String())
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	out, err := m.Call(ctx, service.Request{Payload: payload, Caller: caller}, nil)
	if err == nil {
		var result []byte
		if result, err = m.JSON.Result(out, nil); err == nil {
			return response{JSONRPC: "2.0", Result: result, ID: id}
		}
	}
	code := service.CodeOf(err)
	switch code {
	case wire.CodeUnknownMethod:
		return errorResponse(id, codeMethodNotFound, "method not found: "+name, code.String())
	case wire.CodeBadPayload:
		return errorResponse(id, codeInvalidParams, service.ErrorMessage(code, err), code.String())
	}
	return errorResponse(id, codeNativeBase-int(code), service.ErrorMessage(code, err), code.String())
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

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only raw results could fail, and codecs produce valid JSON
		b, _ = json.Marshal(errorResponse(null, codeNativeBase-int(wire.CodeInternal), "internal error", wire.CodeInternal.String()))
	}
	return b
}
