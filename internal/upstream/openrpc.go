package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// IdempotentField is the extension field of an OpenRPC method object that
// says the method may safely run twice (true), so that nexo may retry it.
// Absent or false: never retried. nexo's own rpc.discover writes it too.
const IdempotentField = "x-idempotent"

// MaxMethods bounds the methods one upstream's document may describe.
const MaxMethods = 4096

// document is what nexo reads of an OpenRPC document.
type document struct {
	OpenRPC *string     `json:"openrpc"`
	Methods []docMethod `json:"methods"`
}

type docMethod struct {
	Ref            string           `json:"$ref"`
	Name           string           `json:"name"`
	Summary        string           `json:"summary"`
	Description    string           `json:"description"`
	ParamStructure string           `json:"paramStructure"`
	Params         []contentDesc    `json:"params"`
	Result         *contentDesc     `json:"result"`
	Errors         []docError       `json:"errors"`
	Examples       []examplePairing `json:"examples"`
	Idempotent     *bool            `json:"x-idempotent"`
}

type contentDesc struct {
	Ref      string          `json:"$ref"`
	Name     string          `json:"name"`
	Required bool            `json:"required"`
	Schema   json.RawMessage `json:"schema"`
}

type docError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type examplePairing struct {
	Description string `json:"description"`
	Params      []struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	} `json:"params"`
	Result *struct {
		Value json.RawMessage `json:"value"`
	} `json:"result"`
}

// described is one method of an upstream's document, as nexo describes it.
type described struct {
	name       string
	summary    string
	idempotent bool
	desc       service.Description
}

// readDocument reads an OpenRPC document into the methods it describes.
// Every error names where in the document it is.
func readDocument(b []byte) ([]described, error) {
	var doc document
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not an OpenRPC document: %w", err)
	}
	if doc.OpenRPC == nil {
		return nil, errors.New(`not an OpenRPC document: no "openrpc" version`)
	}
	if !strings.HasPrefix(*doc.OpenRPC, "1.") {
		return nil, fmt.Errorf("OpenRPC version %q: nexo reads 1.x", *doc.OpenRPC)
	}
	if len(doc.Methods) > MaxMethods {
		return nil, fmt.Errorf("%d methods: at most %d", len(doc.Methods), MaxMethods)
	}
	out := make([]described, 0, len(doc.Methods))
	seen := make(map[string]bool, len(doc.Methods))
	for i, m := range doc.Methods {
		d, err := readMethod(m)
		if err != nil {
			if m.Name != "" {
				return nil, fmt.Errorf("methods[%d] %q: %w", i, m.Name, err)
			}
			return nil, fmt.Errorf("methods[%d]: %w", i, err)
		}
		if d.name == "" {
			continue // rpc.discover and other rpc.* names: the JSON-RPC protocol's own
		}
		if seen[d.name] {
			return nil, fmt.Errorf("methods[%d] %q: described twice", i, m.Name)
		}
		seen[d.name] = true
		out = append(out, d)
	}
	return out, nil
}

// readMethod reads one method object; a method of the JSON-RPC protocol
// itself (rpc.*) gives an empty name.
func readMethod(m docMethod) (described, error) {
	if m.Ref != "" {
		return described{}, errors.New("a $ref method: nexo reads methods written out in the document")
	}
	if err := wire.CheckMethod(m.Name); err != nil {
		return described{}, err
	}
	if strings.HasPrefix(m.Name, "rpc.") {
		return described{}, nil
	}
	d := described{name: m.Name, summary: m.Summary, idempotent: m.Idempotent != nil && *m.Idempotent}
	if d.summary == "" {
		d.summary, _, _ = strings.Cut(m.Description, "\n")
	}
	byPosition := false
	switch m.ParamStructure {
	case "", "either", "by-name":
	case "by-position":
		byPosition = true
	default:
		return described{}, fmt.Errorf("paramStructure %q: want by-name, by-position or either", m.ParamStructure)
	}
	params, err := paramsSchema(m.Params, byPosition)
	if err != nil {
		return described{}, err
	}
	d.desc.Params = params
	if m.Result != nil {
		if m.Result.Ref != "" {
			return described{}, errors.New("result: a $ref: nexo reads content descriptors written out in the document")
		}
		if len(m.Result.Schema) > 0 {
			if err := checkSchema(m.Result.Schema); err != nil {
				return described{}, fmt.Errorf("result: %w", err)
			}
			d.desc.Result = m.Result.Schema
		}
	}
	for _, e := range m.Errors {
		if c, _ := mapCode(e.Code); c != wire.CodeInternal {
			d.desc.Errors = append(d.desc.Errors, c)
		}
	}
	for _, ex := range m.Examples {
		if e, ok := example(ex, byPosition); ok {
			d.desc.Examples = append(d.desc.Examples, e)
		}
	}
	return d, nil
}

// paramsSchema is the JSON Schema of a method's params, made of its
// content descriptors: an object of them by name (by-name, either), or an
// array of them in order (by-position).
func paramsSchema(params []contentDesc, byPosition bool) (json.RawMessage, error) {
	names := make(map[string]bool, len(params))
	var required []string
	props := make([]json.RawMessage, 0, len(params))
	for i, p := range params {
		if p.Ref != "" {
			return nil, fmt.Errorf("params[%d]: a $ref: nexo reads content descriptors written out in the document", i)
		}
		if p.Name == "" || names[p.Name] {
			return nil, fmt.Errorf("params[%d]: want a name of its own", i)
		}
		names[p.Name] = true
		s := p.Schema
		if len(s) == 0 {
			s = json.RawMessage(`{}`)
		}
		if err := checkSchema(s); err != nil {
			return nil, fmt.Errorf("params[%d] %q: %w", i, p.Name, err)
		}
		if p.Required {
			if byPosition && len(required) != i {
				return nil, fmt.Errorf("params[%d] %q: required after an optional param", i, p.Name)
			}
			required = append(required, p.Name)
		}
		if byPosition {
			s = withTitle(s, p.Name)
		}
		props = append(props, s)
	}
	var b bytes.Buffer
	if byPosition {
		b.WriteString(`{"type":"array","prefixItems":[`)
		for i, s := range props {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(s)
		}
		fmt.Fprintf(&b, `],"items":false,"minItems":%d}`, len(required))
		return b.Bytes(), nil
	}
	b.WriteString(`{"type":"object","properties":{`)
	for i, s := range props {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(params[i].Name)
		b.Write(name)
		b.WriteByte(':')
		b.Write(s)
	}
	b.WriteString(`},"additionalProperties":false`)
	if len(required) > 0 {
		req, _ := json.Marshal(required)
		b.WriteString(`,"required":`)
		b.Write(req)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// checkSchema accepts a JSON Schema that is an object or a boolean.
func checkSchema(s json.RawMessage) error {
	s = bytes.TrimSpace(s)
	if len(s) == 0 || s[0] != '{' && string(s) != "true" && string(s) != "false" {
		return errors.New("the schema is neither an object nor a boolean")
	}
	return nil
}

// withTitle names a positional param's schema by its content descriptor,
// unless it has a title of its own.
func withTitle(s json.RawMessage, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(s, &m) != nil || m == nil || m["title"] != nil {
		return s
	}
	m["title"], _ = json.Marshal(name)
	b, err := json.Marshal(m)
	if err != nil {
		return s
	}
	return b
}

// example turns an OpenRPC example pairing into nexo's: params by name or
// in order, and the result, or the error a description "fails with NAME"
// names (as nexo's own rpc.discover writes it).
func example(ex examplePairing, byPosition bool) (service.Example, bool) {
	var b bytes.Buffer
	if byPosition {
		b.WriteByte('[')
		for i, p := range ex.Params {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(p.Value)
		}
		b.WriteByte(']')
	} else {
		b.WriteByte('{')
		for i, p := range ex.Params {
			if i > 0 {
				b.WriteByte(',')
			}
			name, _ := json.Marshal(p.Name)
			b.Write(name)
			b.WriteByte(':')
			b.Write(p.Value)
		}
		b.WriteByte('}')
	}
	e := service.Example{Params: b.Bytes()}
	if ex.Result != nil {
		e.Result = ex.Result.Value
	} else if name, ok := strings.CutPrefix(ex.Description, "fails with "); ok {
		e.Error = name
	}
	return e, json.Valid(e.Params) && (e.Result == nil || json.Valid(e.Result))
}
