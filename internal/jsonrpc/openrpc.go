package jsonrpc

import (
	"encoding/json"
	"fmt"

	"github.com/nexo-project/nexo/internal/schema"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Discover is the method that answers with the OpenRPC document of every
// method the caller may call, as the OpenRPC specification names it. The
// JSON doors answer it; it is not a method of the registry.
const Discover = "rpc.discover"

// OpenRPCVersion is the version of the OpenRPC specification the document
// follows.
const OpenRPCVersion = "1.3.2"

// openrpcDoc is an OpenRPC document.
type openrpcDoc struct {
	OpenRPC string          `json:"openrpc"`
	Info    openrpcInfo     `json:"info"`
	Methods []openrpcMethod `json:"methods"`
}

type openrpcInfo struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Version     string `json:"version"`
}

type openrpcMethod struct {
	Name           string              `json:"name"`
	Summary        string              `json:"summary,omitempty"`
	ParamStructure string              `json:"paramStructure"`
	Params         []contentDescriptor `json:"params"`
	Result         *contentDescriptor  `json:"result,omitempty"`
	Errors         []openrpcError      `json:"errors,omitempty"`
	Examples       []examplePairing    `json:"examples,omitempty"`
	// Extensions: what nexo's own descriptions say that OpenRPC does not.
	Idempotent bool     `json:"x-idempotent"`
	Encoding   string   `json:"x-encoding"`
	Binary     string   `json:"x-binary,omitempty"`
	ServedBy   []string `json:"x-served-by,omitempty"`
}

type contentDescriptor struct {
	Name     string          `json:"name"`
	Required bool            `json:"required,omitempty"`
	Schema   json.RawMessage `json:"schema"`
}

type openrpcError struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

type examplePairing struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Params      []exampleObject `json:"params"`
	Result      *exampleObject  `json:"result,omitempty"`
}

type exampleObject struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// discover builds the OpenRPC document of the methods ds describes, for a
// server of that version.
func discover(ds []service.Described, version string) ([]byte, error) {
	doc := openrpcDoc{OpenRPC: OpenRPCVersion, Info: openrpcInfo{Title: "nexo", Version: version,
		Description: "Every method this nexo server serves, on every door: JSON-RPC 2.0 over POST /rpc and /ws, and the native binary protocol."},
		Methods: []openrpcMethod{}}
	for _, d := range ds {
		m, err := openrpcMethodOf(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		doc.Methods = append(doc.Methods, m)
	}
	return json.Marshal(doc)
}

// openrpcMethodOf turns a nexo description into an OpenRPC method: params
// by name when they are an object with properties, by position otherwise.
func openrpcMethodOf(d service.Described) (openrpcMethod, error) {
	p, err := schema.Read(d.Params)
	if err != nil {
		return openrpcMethod{}, err
	}
	m := openrpcMethod{Name: d.Name, Summary: d.Summary, ParamStructure: "by-position", Params: []contentDescriptor{},
		Idempotent: d.Idempotent, Encoding: d.Encoding, Binary: d.Binary, ServedBy: d.ServedBy}
	if p.Kind == "object" {
		m.ParamStructure = "by-name"
	}
	for _, f := range p.Fields {
		m.Params = append(m.Params, contentDescriptor{Name: f.Name, Required: f.Required, Schema: f.Schema})
	}
	if len(d.Result) > 0 {
		m.Result = &contentDescriptor{Name: "result", Schema: d.Result}
	}
	for _, name := range d.Errors {
		if c, ok := wire.ParseCode(name); ok {
			m.Errors = append(m.Errors, openrpcError{Code: ErrorCode(c), Message: name, Data: map[string]any{"name": name}})
		}
	}
	for i, ex := range d.Examples {
		pair := examplePairing{Name: ex.Name, Params: []exampleObject{}}
		if pair.Name == "" {
			pair.Name = fmt.Sprintf("example %d", i+1)
		}
		pair.Params = exampleParams(p, ex.Params)
		if ex.Error != "" {
			pair.Description = "fails with " + ex.Error
		} else {
			pair.Result = &exampleObject{Name: "result", Value: ex.Result}
		}
		m.Examples = append(m.Examples, pair)
	}
	return m, nil
}

// exampleParams splits an example's params into named values.
func exampleParams(p schema.Params, params json.RawMessage) []exampleObject {
	out := []exampleObject{}
	name := func(i int) string {
		if i < len(p.Fields) {
			return p.Fields[i].Name
		}
		return fmt.Sprintf("param%d", i+1)
	}
	var list []json.RawMessage
	if json.Unmarshal(params, &list) == nil {
		for i, v := range list {
			out = append(out, exampleObject{Name: name(i), Value: v})
		}
		return out
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(params, &obj) == nil {
		for _, f := range p.Fields { // in the schema's order
			if v, ok := obj[f.Name]; ok {
				out = append(out, exampleObject{Name: f.Name, Value: v})
			}
		}
	}
	return out
}
