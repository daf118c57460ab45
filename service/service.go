// Package service defines what a nexo service is: methods, binary or typed
// JSON (see JSON), each described for discovery (Description), errors that
// carry the protocol's codes (Error), and the registry that maps method
// names to methods. Every door of the server (native, legacy, web) and
// every worker over NATS dispatches through one Registry.
//
// This package is public and stable within v0: see docs/services.md for
// the promise. A service is a []Method, registered where a program wires
// things together.
package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/wire"
)

// Errors a handler may return besides its own sentinels. The server maps
// them to protocol codes.
var (
	// ErrBadPayload means the payload does not fit the method (BAD_PAYLOAD).
	ErrBadPayload = errors.New("service: bad payload")
	// ErrNotPermitted means the caller may not use this method. It is
	// answered as UNKNOWN_METHOD so that privileged methods stay hidden.
	ErrNotPermitted = errors.New("service: method not permitted for this caller")
)

// Caller describes who sent a request. The server fills it once per
// connection; handlers must not modify it.
type Caller struct {
	ID     uint64 // client id, unique for the server's lifetime
	Door   string // "native", "legacy", ...
	Remote string // remote address
	Name   string // from HELLO, may be empty
	// Identity is the subject of the client's verified TLS certificate
	// (mutual TLS), e.g. "CN=alice,O=example"; empty without one.
	Identity string
	Loopback bool // the remote address is a loopback address
	// Admin is set by the door when the caller is an administrator: it
	// gave the admin token, or no token is configured and it connected
	// from loopback.
	Admin bool
}

// Trusted reports whether the caller may use administrative methods.
func (c *Caller) Trusted() bool { return c != nil && c.Admin }

// Request is one call to a handler. Method and Payload alias the
// connection's read buffer: a handler must not keep them after returning.
type Request struct {
	// Method is the name the client called. Handlers of one method can
	// ignore it; a fallback that serves many names needs it. It may be
	// nil where the door knows the method already.
	Method  []byte
	Payload []byte
	Caller  *Caller
	// Trace, when tracing is on, is a context holding the request's span,
	// for an Async handler to carry on to where it serves the request (a
	// Handler has it in ctx). Nil when tracing is off.
	Trace context.Context
}

// Handler serves one method. It appends its response payload to dst and
// returns the extended slice, or returns an error. It must honour ctx.
type Handler func(ctx context.Context, req Request, dst []byte) ([]byte, error)

// AsyncHandler starts serving a request somewhere else (a worker over NATS)
// and returns at once, so that no goroutine waits for the answer. It must
// copy what it needs of req before returning. done is called exactly once,
// from any goroutine, with the response payload or an error, by the
// deadline at the latest; done must not keep payload after returning.
//
// done may leave the answer unwritten and return a Flusher (or nil): the
// handler calls its Flush once it has delivered the answers it has at hand,
// so that answers that arrive together (one NATS message) share one write.
type AsyncHandler func(req Request, deadline time.Time, done func(payload []byte, err error) Flusher)

// Flusher writes or sends what was held back.
type Flusher interface{ Flush() }

// Batcher holds back the requests of asynchronous methods while any door
// is in the middle of a burst, and sends them together when the last one
// releases it (or sooner, when enough are held).
type Batcher interface {
	Hold()
	Release()
}

// DefaultTimeout bounds an asynchronous call made through Call with a
// context that has no deadline.
const DefaultTimeout = 30 * time.Second

// Method describes one method of a service.
type Method struct {
	Name string // e.g. "math.add": printable ASCII, 1..255 bytes
	// Handler serves the method in this process. Exactly one of Handler
	// and Async is set.
	Handler Handler
	// Async serves the method in another process. Doors that can answer
	// out of order (native) call it directly; the others go through Call,
	// which waits for the answer.
	Async AsyncHandler
	// Batcher, when set with Async, may hold requests back so as to send
	// many together. A door calls Hold before it passes the first request
	// of a burst and Release once it has no more requests at hand; Call
	// does both around its one request.
	Batcher Batcher
	// Inline marks a handler that is cheap and never blocks. The server runs
	// it on the connection's reader without a goroutine or a per-request
	// context; a slow handler must leave this false, so that it runs
	// concurrently and cannot hold back the connection's other requests.
	Inline bool
	// Idempotent marks a method that may safely run twice, so that a
	// client or a gateway may retry it.
	Idempotent bool
	// Hidden keeps the method out of listings for untrusted callers.
	Hidden bool
	// Summary is one line for listings.
	Summary string
	// JSON, when set, lets JSON doors (JSON-RPC) call the method; a method
	// without it is binary-only there.
	JSON *JSONCodec
	// Desc describes the method for discovery (sys.describe).
	Desc Description
}

// JSONCodec translates a method's JSON-RPC params and result to and from
// its binary payloads.
type JSONCodec struct {
	// Params appends the request payload for JSON params (which may be
	// empty when the call has none). Params that do not fit the method
	// return an error wrapping ErrBadParams.
	Params func(params []byte, dst []byte) ([]byte, error)
	// Result appends the JSON form of a response payload.
	Result func(payload []byte, dst []byte) ([]byte, error)
	// MaxParams is the most elements (params as an array) or members (as
	// an object) the method takes; 0 means DefaultMaxParams. The JSON
	// doors count them without decoding and refuse more as invalid
	// params, before Params runs, so a huge params array costs nothing.
	MaxParams int
}

// DefaultMaxParams is the params limit of a JSONCodec that sets none.
const DefaultMaxParams = 16

// ParamsLimit returns MaxParams, or DefaultMaxParams when it is 0.
func (c *JSONCodec) ParamsLimit() int {
	if c.MaxParams > 0 {
		return c.MaxParams
	}
	return DefaultMaxParams
}

// ErrBadParams means JSON params do not fit the method (JSON-RPC invalid
// params).
var ErrBadParams = errors.New("service: invalid params")

// NoParamsJSON is the codec of methods that take no params and whose
// payload is JSON already (sys.info, sys.clients, sys.cluster): empty
// params ([], {}, null or none) pass, anything else is ErrBadParams; the
// result passes through.
var NoParamsJSON = &JSONCodec{
	Params: func(params, dst []byte) ([]byte, error) {
		if p := bytes.TrimSpace(params); len(p) > 0 && string(p) != "[]" && string(p) != "{}" && string(p) != "null" {
			return dst, fmt.Errorf("%w: this method takes no params", ErrBadParams)
		}
		return dst, nil
	},
	Result: func(payload, dst []byte) ([]byte, error) { return append(dst, payload...), nil },
}

// Registry maps method names to methods. Lookups take no lock: the map
// is replaced whole, never changed in place, so methods may come and go
// while the server runs (an HTTP upstream's, say) at the cost of a copy
// per change.
type Registry struct {
	methods  atomic.Pointer[map[string]*Method]
	mu       sync.Mutex // serialises changes
	fallback *Method
	remote   Remote
}

// Remote is what a registry knows of methods served elsewhere: a
// gateway's view of the methods its cluster's workers serve.
type Remote interface {
	// Describe returns the methods served elsewhere.
	Describe() []Described
	// Method returns a method served elsewhere, callable from here (by
	// the JSON doors too), or nil when none of that name is known.
	Method(name string) *Method
}

// SetRemote makes the methods rm knows part of the registry's Get and
// Describe; the local ones win a name both have. Set it before the server
// starts.
func (r *Registry) SetRemote(rm Remote) { r.remote = rm }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// all returns the methods now. The map must not be changed.
func (r *Registry) all() map[string]*Method {
	if p := r.methods.Load(); p != nil {
		return *p
	}
	return nil
}

// Register adds methods. A duplicate or invalid name is an error, and
// nothing of that call is registered.
func (r *Registry) Register(ms ...Method) error { return r.Replace(nil, ms...) }

// Replace removes the methods named in remove and adds ms, at once: a
// lookup sees the registry before or after, never between. A name of ms
// that is registered and not removed, or an invalid one, is an error, and
// nothing changes.
func (r *Registry) Replace(remove []string, ms ...Method) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.all()
	gone := make(map[string]bool, len(remove))
	for _, n := range remove {
		gone[n] = true
	}
	for i, m := range ms {
		if err := wire.CheckMethod(m.Name); err != nil {
			return fmt.Errorf("register %q: %w", m.Name, err)
		}
		if (m.Handler == nil) == (m.Async == nil) {
			return fmt.Errorf("register %q: want exactly one of Handler and Async", m.Name)
		}
		if _, dup := cur[m.Name]; dup && !gone[m.Name] {
			return fmt.Errorf("register %q: already registered", m.Name)
		}
		for _, prev := range ms[:i] {
			if prev.Name == m.Name {
				return fmt.Errorf("register %q: listed twice", m.Name)
			}
		}
	}
	next := make(map[string]*Method, len(cur)+len(ms))
	for n, m := range cur {
		if !gone[n] {
			next[n] = m
		}
	}
	for _, m := range ms {
		next[m.Name] = &m
	}
	r.methods.Store(&next)
	return nil
}

// LookupCache is one reader's memory of its last lookup
// (Registry.LookupCached): a connection usually calls the same method
// again. Its zero value is empty.
type LookupCache struct {
	table *map[string]*Method // the registry's table it was found in
	m     *Method
}

// LookupCached is Lookup, answered from c when name is the method c holds
// and the registry has not changed since it was looked up.
func (r *Registry) LookupCached(name []byte, c *LookupCache) *Method {
	p := r.methods.Load()
	if c.m != nil && c.table == p && string(name) == c.m.Name {
		return c.m
	}
	if p == nil {
		return nil
	}
	m := (*p)[string(name)]
	if m != nil {
		c.table, c.m = p, m
	}
	return m
}

// Lookup returns the method with the given name, or nil. It does not
// allocate.
func (r *Registry) Lookup(name []byte) *Method { return r.all()[string(name)] }

// Names returns the sorted method names, leaving out hidden methods unless
// withHidden is set.
func (r *Registry) Names(withHidden bool) []string {
	methods := r.all()
	names := make([]string, 0, len(methods))
	for n, m := range methods {
		if withHidden || !m.Hidden {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Get returns the method with the given name, registered here or known
// elsewhere (SetRemote), or nil.
func (r *Registry) Get(name string) *Method {
	if m := r.all()[name]; m != nil || r.remote == nil {
		return m
	}
	return r.remote.Method(name)
}

// SetFallback makes m serve every name that is not registered, on the
// doors that can call a method without knowing it (native). A gateway uses
// it to forward unknown methods to workers. m needs an Async handler; its
// Name is what metrics and logs call those requests.
func (r *Registry) SetFallback(m Method) error {
	if m.Async == nil || m.Handler != nil {
		return fmt.Errorf("fallback %q: want an Async handler only", m.Name)
	}
	r.fallback = &m
	return nil
}

// Fallback returns the method set by SetFallback, or nil.
func (r *Registry) Fallback() *Method { return r.fallback }

// Call runs the method's handler, turning a panic into an error so that one
// bad request cannot take the server down.
//
// An asynchronous method is waited for, until ctx ends; without a
// deadline in ctx, DefaultTimeout applies.
func (m *Method) Call(ctx context.Context, req Request, dst []byte) (out []byte, err error) {
	if m.Async != nil {
		return m.wait(ctx, req, dst)
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = dst, fmt.Errorf("panic in %s: %v", m.Name, p)
		}
	}()
	return m.Handler(ctx, req, dst)
}

// wait runs an asynchronous method and waits for its answer.
func (m *Method) wait(ctx context.Context, req Request, dst []byte) ([]byte, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	type result struct {
		payload []byte
		err     error
	}
	ch := make(chan result, 1)
	if req.Trace == nil {
		req.Trace = ctx // a JSON door's span, if tracing is on
	}
	if m.Batcher != nil {
		m.Batcher.Hold()
	}
	m.Async(req, deadline, func(p []byte, err error) Flusher {
		ch <- result{append([]byte(nil), p...), err}
		return nil
	})
	if m.Batcher != nil {
		m.Batcher.Release()
	}
	select {
	case r := <-ch:
		return append(dst, r.payload...), r.err
	case <-ctx.Done():
		return dst, ctx.Err()
	}
}

// CodeOf maps a handler's error to the protocol code a client is sent.
// Errors that carry a request-level code keep it; anything unknown is
// INTERNAL.
func CodeOf(err error) wire.Code {
	switch {
	case errors.Is(err, ErrBadPayload), errors.Is(err, ErrBadParams):
		return wire.CodeBadPayload
	case errors.Is(err, ErrNotPermitted):
		return wire.CodeUnknownMethod
	case errors.Is(err, context.DeadlineExceeded):
		return wire.CodeTimeout
	}
	if c, ok := wire.CodeOf(err); ok && c.Answerable() {
		return c
	}
	return wire.CodeInternal
}

// ErrorMessage is the text sent with an error: the handler's own words for
// known errors, nothing of an internal one (log those instead), unless it
// is an Error(wire.CodeInternal, msg), whose words were meant for the
// client (an upstream's garbage answer, say).
func ErrorMessage(code wire.Code, err error) string {
	we, isWire := errors.AsType[*wire.Error](err)
	switch {
	case isWire && we.Code == code:
		return we.Msg
	case code == wire.CodeInternal:
		return "internal error"
	case isWire:
		return we.Msg
	}
	return err.Error()
}
