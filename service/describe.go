package service

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/nexo-project/nexo/wire"
)

// Description says how to call a method, beyond its name and summary:
// the JSON Schemas of its params and result (their JSON forms, as the JSON
// doors carry them), the error codes it may return, examples, and, for a
// binary method, the layout of its payloads on the native door.
type Description struct {
	// Params and Result are JSON Schemas (draft 2020-12) of the params
	// and the result in JSON.
	Params, Result json.RawMessage
	// Errors are the codes the method itself may return. Every method may
	// also get the codes any request may (BUSY, TIMEOUT, SHUTTING_DOWN,
	// UNAVAILABLE on a gateway, INTERNAL); they are not listed.
	Errors []wire.Code
	// Examples are calls and what they give, in JSON.
	Examples []Example
	// Binary describes the native payloads of a binary method, such as
	// "a, b: big-endian int64 (16 bytes) → int64 (8 bytes)". It is empty
	// for a JSON method, whose native payloads are its JSON params and
	// result.
	Binary string
	// ServedBy says what serves the method when that is not Go code in
	// this process, such as "upstream http://127.0.0.1:8000/rpc"; empty
	// means "in-process".
	ServedBy []string
}

// Example is one call of a method in JSON: its params, and its result or
// the name of its error.
type Example struct {
	Name   string          `json:"name,omitempty"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Described is a method as sys.describe publishes it.
type Described struct {
	Name       string          `json:"name"`
	Summary    string          `json:"summary,omitempty"`
	Encoding   string          `json:"encoding"`         // "json" or "binary"
	Binary     string          `json:"binary,omitempty"` // the binary layout, for a binary method
	Params     json.RawMessage `json:"params,omitempty"` // JSON Schema
	Result     json.RawMessage `json:"result,omitempty"` // JSON Schema
	Errors     []string        `json:"errors"`
	Idempotent bool            `json:"idempotent"`
	Examples   []Example       `json:"examples,omitempty"`
	// ServedBy names what serves the method: "in-process", "go worker",
	// "node worker", "upstream URL", or what another worker calls itself;
	// a gateway lists every kind its cluster has for the method.
	ServedBy []string `json:"served_by,omitempty"`
}

// Describe returns the method as sys.describe publishes it.
func (m *Method) Describe() Described {
	d := Described{Name: m.Name, Summary: m.Summary, Encoding: "json", Binary: m.Desc.Binary,
		Params: m.Desc.Params, Result: m.Desc.Result, Idempotent: m.Idempotent,
		Examples: m.Desc.Examples, Errors: []string{}, ServedBy: m.Desc.ServedBy}
	if len(d.ServedBy) == 0 {
		d.ServedBy = []string{InProcess}
	}
	if m.Desc.Binary != "" {
		d.Encoding = "binary"
	}
	for _, c := range m.Desc.Errors {
		d.Errors = append(d.Errors, c.String())
	}
	return d
}

// InProcess is the ServedBy of a method served by Go code in the process
// that describes it.
const InProcess = "in-process"

// Describe returns every method the caller may see, by name: those
// registered here, and those known elsewhere (SetRemote). A method
// registered here that is served elsewhere (Async: a gateway's stub)
// says what serves it there when the remote knows.
func (r *Registry) Describe(withHidden bool) []Described {
	var out []Described
	methods := r.all()
	remote := map[string]Described{}
	if r.remote != nil {
		for _, d := range r.remote.Describe() {
			remote[d.Name] = d
		}
	}
	for name, m := range methods { // one snapshot: methods may change meanwhile (an upstream's)
		if m.Hidden && !withHidden {
			continue
		}
		d := m.Describe()
		if rd, ok := remote[name]; ok && m.Async != nil && len(rd.ServedBy) > 0 {
			d.ServedBy = rd.ServedBy
		}
		out = append(out, d)
	}
	for name, d := range remote {
		if methods[name] == nil {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Described) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Error returns an error that carries a protocol code: a handler returns
// Error(wire.CodeOverflow, "...") and the client gets OVERFLOW (-32007 on
// the JSON doors) with that message. A service's own codes are 1000 and
// up (wire.MinApplicationCode): every door carries them unchanged, the
// JSON doors as the same JSON-RPC code. Codes that close a connection,
// and other unknown ones, are sent as INTERNAL.
func Error(code wire.Code, msg string) error { return &wire.Error{Code: code, Msg: msg} }
