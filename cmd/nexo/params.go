package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// jsonParams builds a JSON method's params from command-line arguments,
// as its params schema says:
//
//   - one argument that is a JSON object or array is sent as it is;
//   - name=value arguments make an object;
//   - other arguments fill the schema's properties in order (an object),
//     or its items (an array).
//
// A value becomes what its field's schema type says: an integer or a
// number (exact JSON text), true or false, a string, or parsed JSON for an
// object or array; when the schema says nothing, JSON if it parses, else
// a string.
func jsonParams(schema json.RawMessage, args []string) ([]byte, error) {
	if len(args) == 0 {
		return nil, nil
	}
	if len(args) == 1 {
		if a := strings.TrimSpace(args[0]); (strings.HasPrefix(a, "{") || strings.HasPrefix(a, "[")) && json.Valid([]byte(a)) {
			return []byte(a), nil
		}
	}
	s, err := readSchema(schema)
	if err != nil {
		return nil, err
	}
	named := 0
	for _, a := range args {
		if name, _, ok := strings.Cut(a, "="); ok && name != "" && !strings.ContainsAny(name, " {[\"") {
			named++
		}
	}
	var b bytes.Buffer
	switch {
	case named == len(args):
		b.WriteByte('{')
		for i, a := range args {
			name, value, _ := strings.Cut(a, "=")
			v, err := jsonValue(s.props[name], value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(name) // a string always marshals
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
		}
		b.WriteByte('}')
	case named > 0:
		return nil, fmt.Errorf("give every argument as name=value, or none")
	case s.kind == "object":
		if len(args) > len(s.order) {
			return nil, fmt.Errorf("%d arguments for %d fields (%s)", len(args), len(s.order), strings.Join(s.order, ", "))
		}
		b.WriteByte('{')
		for i, a := range args {
			name := s.order[i]
			v, err := jsonValue(s.props[name], a)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(name) // a string always marshals
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
		}
		b.WriteByte('}')
	default: // an array, or nothing said: positional
		b.WriteByte('[')
		for i, a := range args {
			typ := ""
			if i < len(s.items) {
				typ = s.items[i]
			}
			v, err := jsonValue(typ, a)
			if err != nil {
				return nil, fmt.Errorf("argument %d: %w", i+1, err)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(v)
		}
		b.WriteByte(']')
	}
	return b.Bytes(), nil
}

// paramsSchema is what jsonParams reads of a params schema.
type paramsSchema struct {
	kind  string            // "object", "array" or ""
	order []string          // an object's properties, in the schema's order
	props map[string]string // an object's property types
	items []string          // an array's item types, by position
}

// readSchema reads the type, properties (in order) and prefix items of a
// JSON Schema.
func readSchema(schema json.RawMessage) (paramsSchema, error) {
	s := paramsSchema{props: map[string]string{}}
	if len(schema) == 0 {
		return s, nil
	}
	var top struct {
		Type        any                           `json:"type"`
		Properties  json.RawMessage               `json:"properties"`
		PrefixItems []struct{ Type any }          `json:"prefixItems"`
		Props       map[string]struct{ Type any } `json:"-"`
	}
	if err := json.Unmarshal(schema, &top); err != nil {
		return s, fmt.Errorf("the method's params schema: %w", err)
	}
	s.kind = typeName(top.Type)
	for _, it := range top.PrefixItems {
		s.items = append(s.items, typeName(it.Type))
	}
	if len(top.Properties) > 0 {
		d := json.NewDecoder(bytes.NewReader(top.Properties))
		if _, err := d.Token(); err != nil { // {
			return s, err
		}
		for d.More() {
			tok, err := d.Token()
			if err != nil {
				return s, err
			}
			name, _ := tok.(string)
			var p struct{ Type any }
			if err := d.Decode(&p); err != nil {
				return s, err
			}
			s.order = append(s.order, name)
			s.props[name] = typeName(p.Type)
		}
	}
	return s, nil
}

// typeName is a schema's "type" when it is one name ("integer"), or "".
func typeName(t any) string {
	name, _ := t.(string)
	return name
}

// jsonValue is a command-line value as JSON of the given schema type.
func jsonValue(typ, v string) ([]byte, error) {
	switch typ {
	case "integer":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("%q is not an integer", v)
		}
		return []byte(v), nil
	case "number":
		if _, err := strconv.ParseFloat(v, 64); err != nil || !json.Valid([]byte(v)) {
			return nil, fmt.Errorf("%q is not a number", v)
		}
		return []byte(v), nil
	case "boolean":
		if v != "true" && v != "false" {
			return nil, fmt.Errorf("%q is not true or false", v)
		}
		return []byte(v), nil
	case "string":
		return json.Marshal(v)
	case "object", "array":
		if !json.Valid([]byte(v)) {
			return nil, fmt.Errorf("%q is not JSON", v)
		}
		return []byte(v), nil
	}
	if json.Valid([]byte(v)) {
		return []byte(v), nil
	}
	return json.Marshal(v)
}
