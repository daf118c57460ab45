// Package schema reads what nexo's tools need of a method's params JSON
// Schema: whether the params are an object or an array, and their fields
// in order, with their types. It does not validate; see service for that.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Field is one param: an object's property or an array's item.
type Field struct {
	Name     string          // the property's name; an item's title, or "param1", "param2", ...
	Type     string          // the schema's "type" when it is one name ("integer"), or ""
	Schema   json.RawMessage // the field's own schema
	Required bool            // a required property, or an item within minItems
}

// Params describes a params schema: Kind is "object" (by name), "array" (by
// position) or "" (neither said, such as "no params"), and Fields lists the
// object's properties in the schema's order, or the array's prefix items.
// An anyOf or oneOf is read as its first branch that is an object with
// properties or an array with prefix items, its fields then optional.
type Params struct {
	Kind   string
	Fields []Field
}

// Read reads a params schema.
func Read(s json.RawMessage) (Params, error) {
	var p Params
	if len(bytes.TrimSpace(s)) == 0 {
		return p, nil
	}
	var top struct {
		Type        any               `json:"type"`
		Properties  json.RawMessage   `json:"properties"`
		Required    []string          `json:"required"`
		PrefixItems []json.RawMessage `json:"prefixItems"`
		MinItems    int               `json:"minItems"`
		AnyOf       []json.RawMessage `json:"anyOf"`
		OneOf       []json.RawMessage `json:"oneOf"`
	}
	if err := json.Unmarshal(s, &top); err != nil {
		return p, fmt.Errorf("params schema: %w", err)
	}
	for _, branch := range append(top.AnyOf, top.OneOf...) {
		if b, err := Read(branch); err == nil && len(b.Fields) > 0 {
			for i := range b.Fields {
				b.Fields[i].Required = false
			}
			return b, nil
		}
	}
	p.Kind = typeName(top.Type)
	for i, item := range top.PrefixItems {
		var it struct {
			Type  any    `json:"type"`
			Title string `json:"title"`
		}
		if err := json.Unmarshal(item, &it); err != nil {
			return p, fmt.Errorf("params schema: item %d: %w", i+1, err)
		}
		name := it.Title
		if name == "" {
			name = fmt.Sprintf("param%d", i+1)
		}
		p.Fields = append(p.Fields, Field{Name: name, Type: typeName(it.Type), Schema: item, Required: i < top.MinItems})
	}
	if len(top.Properties) > 0 {
		required := map[string]bool{}
		for _, r := range top.Required {
			required[r] = true
		}
		d := json.NewDecoder(bytes.NewReader(top.Properties))
		if _, err := d.Token(); err != nil { // the object's {
			return p, fmt.Errorf("params schema: %w", err)
		}
		for d.More() {
			tok, err := d.Token()
			if err != nil {
				return p, fmt.Errorf("params schema: %w", err)
			}
			name, _ := tok.(string)
			var raw json.RawMessage
			if err := d.Decode(&raw); err != nil {
				return p, fmt.Errorf("params schema: %s: %w", name, err)
			}
			var f struct {
				Type any `json:"type"`
			}
			_ = json.Unmarshal(raw, &f) // a property's schema is an object; a bad one has no type
			p.Fields = append(p.Fields, Field{Name: name, Type: typeName(f.Type), Schema: raw, Required: required[name]})
		}
	}
	return p, nil
}

// typeName is a schema's "type" when it is one name, or "".
func typeName(t any) string {
	name, _ := t.(string)
	return name
}
