package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"
	schema "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nexo-project/nexo/wire"
)

// JSONFunc is a JSON method written as a plain typed Go function: params
// decode into P, the result R encodes as JSON. The caller says who called.
type JSONFunc[P, R any] func(ctx context.Context, caller *Caller, params P) (R, error)

// JSON makes a method of a typed function. Its params are a JSON object
// that decodes into P, and its result is R in JSON, on every door: the
// JSON doors carry them as JSON-RPC params and result, and the native door
// as the request and response payloads (JSON text). The JSON Schemas of
// params and result are derived from P and R (struct fields, `json` tags,
// and `jsonschema` tags such as `jsonschema:"minLength=1,maxLength=64"`),
// and every call's params are checked against theirs before fn runs:
// params that do not fit are BAD_PAYLOAD (-32602), with a message that
// names the field. Set Summary, Idempotent, Desc.Errors and Desc.Examples
// on the returned method as needed.
//
// It panics if P or R cannot be described as a JSON Schema (a channel, a
// func): that is a programming error, found at start-up.
func JSON[P, R any](name string, fn JSONFunc[P, R]) Method {
	params, check := mustSchema[P](name)
	result, _ := mustSchema[R](name)
	return Method{
		Name: name,
		Handler: func(ctx context.Context, req Request, dst []byte) ([]byte, error) {
			p, err := decodeParams[P](req.Payload, check)
			if err != nil {
				return dst, err
			}
			r, err := fn(ctx, req.Caller, p)
			if err != nil {
				return dst, err
			}
			b, err := json.Marshal(r)
			if err != nil {
				return dst, fmt.Errorf("service: %s: result: %w", name, err)
			}
			return append(dst, b...), nil
		},
		JSON: PassJSON,
		Desc: Description{Params: params, Result: result, Errors: []wire.Code{wire.CodeBadPayload}},
	}
}

// PassJSON is the JSON codec of JSON methods, whose native payloads are
// JSON already: params and result pass through unchanged.
var PassJSON = &JSONCodec{
	Params: func(params, dst []byte) ([]byte, error) { return append(dst, params...), nil },
	Result: func(payload, dst []byte) ([]byte, error) { return append(dst, payload...), nil },
	// The schema check bounds what the method takes; the doors' count
	// only guards against a huge params value before it is decoded.
	MaxParams: 256,
}

// decodeParams checks a JSON payload against the params schema, then
// decodes it into P.
func decodeParams[P any](payload []byte, check *schema.Schema) (P, error) {
	var p P
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}") // no params: an empty object
	}
	v, err := schema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return p, fmt.Errorf("%w: not JSON: %v", ErrBadParams, err)
	}
	if err := check.Validate(v); err != nil {
		return p, fmt.Errorf("%w: %s", ErrBadParams, validationMessage(err))
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return p, fmt.Errorf("%w: %v", ErrBadParams, err)
	}
	return p, nil
}

// validationMessage is a schema error in one line, naming the field: the
// innermost of the validator's causes, "at '/name': minLength: got 0,
// want 1".
func validationMessage(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	msg := strings.TrimPrefix(strings.TrimSpace(lines[len(lines)-1]), "- ")
	if rest, ok := strings.CutPrefix(msg, "at '': "); ok {
		return "the params: " + rest // the whole value, not a field
	}
	return msg
}

// mustSchema derives the JSON Schema of T, and compiles it to check
// values.
func mustSchema[T any](method string) (json.RawMessage, *schema.Schema) {
	r := &jsonschema.Reflector{
		DoNotReference:             true, // one self-contained schema per method
		ExpandedStruct:             true,
		RequiredFromJSONSchemaTags: false, // a field without omitempty is required
	}
	var zero T
	s := r.ReflectFromType(reflect.TypeOf(&zero).Elem())
	s.Version = "" // the draft is implied; OpenRPC embeds schemas without it
	s.ID = ""
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("service: %s: no JSON Schema for %T: %v", method, zero, err))
	}
	c := schema.NewCompiler()
	doc, err := schema.UnmarshalJSON(bytes.NewReader(b))
	if err == nil {
		err = c.AddResource("params.json", doc)
	}
	var compiled *schema.Schema
	if err == nil {
		compiled, err = c.Compile("params.json")
	}
	if err != nil {
		panic(fmt.Sprintf("service: %s: the JSON Schema of %T does not compile: %v", method, zero, err))
	}
	return b, compiled
}

// SchemaOf returns the JSON Schema of T, derived as JSON derives a typed
// method's: for describing the JSON params or result of a method written
// by hand. It panics if T has none (a channel, a func).
func SchemaOf[T any]() json.RawMessage {
	b, _ := mustSchema[T]("SchemaOf")
	return b
}
