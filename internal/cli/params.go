package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nexo-project/nexo/internal/schema"
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
func jsonParams(params json.RawMessage, args []string) ([]byte, error) {
	if len(args) == 0 {
		return nil, nil
	}
	if len(args) == 1 {
		if a := strings.TrimSpace(args[0]); (strings.HasPrefix(a, "{") || strings.HasPrefix(a, "[")) && json.Valid([]byte(a)) {
			return []byte(a), nil
		}
	}
	s, err := schema.Read(params)
	if err != nil {
		return nil, err
	}
	order, types := fieldTypes(s)
	// name=value names a field; for positional params, only one of the
	// schema's items, so that a positional value may hold a '='.
	named := 0
	for _, a := range args {
		name, _, ok := strings.Cut(a, "=")
		if ok && name != "" && !strings.ContainsAny(name, " {[\"") && (s.Kind != "array" || slices.Contains(order, name)) {
			named++
		}
	}
	// Each argument becomes a named, typed value; the object or array is
	// written from those.
	type entry struct{ name, value string }
	var entries []entry
	byName := named == len(args)
	switch {
	case byName:
		for _, a := range args {
			name, value, _ := strings.Cut(a, "=")
			entries = append(entries, entry{name, value})
		}
	case named > 0:
		return nil, fmt.Errorf("give every argument as name=value, or none")
	case s.Kind == "object" && len(args) > len(order):
		return nil, fmt.Errorf("%d arguments for %d fields (%s)", len(args), len(order), strings.Join(order, ", "))
	default:
		for i, a := range args {
			name := fmt.Sprintf("argument %d", i+1)
			if i < len(order) {
				name = order[i]
			}
			entries = append(entries, entry{name, a})
		}
	}
	vals := make([][]byte, len(entries))
	for i, e := range entries {
		v, err := jsonValue(types[e.name], e.value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		vals[i] = v
	}
	var b bytes.Buffer
	if s.Kind == "object" || (byName && s.Kind != "array") {
		b.WriteByte('{')
		for i, e := range entries {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(e.name) // a string always marshals
			b.Write(k)
			b.WriteByte(':')
			b.Write(vals[i])
		}
		b.WriteByte('}')
		return b.Bytes(), nil
	}
	if byName { // named items of positional params: placed by their titles
		placed := make([][]byte, len(order))
		last := -1
		for i, e := range entries {
			at := slices.Index(order, e.name)
			placed[at], last = vals[i], max(last, at)
		}
		vals = placed[:last+1]
	}
	b.WriteByte('[')
	for i, v := range vals {
		if v == nil {
			return nil, fmt.Errorf("%s is missing: the params are positional", order[i])
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(v)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// fieldTypes maps the schema's fields to their types, and lists their
// names in order.
func fieldTypes(p schema.Params) (order []string, types map[string]string) {
	types = map[string]string{}
	for _, f := range p.Fields {
		order = append(order, f.Name)
		types[f.Name] = f.Type
	}
	return order, types
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
