package cli

import (
	"encoding/json"
	"testing"
)

// TestJSONParams: a JSON method's params are built from its schema:
// positional values in the properties' order, name=value pairs, or one raw
// JSON argument, each value typed as its field says.
func TestJSONParams(t *testing.T) {
	object := json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"},"times":{"type":"integer"},` +
		`"loud":{"type":"boolean"},"tags":{"type":"array"},"ratio":{"type":"number"}},"required":["name"]}`)
	array := json.RawMessage(`{"type":"array","prefixItems":[{"type":"integer","minimum":1},{"type":"string"}],"minItems":1,"maxItems":2}`)
	titled := json.RawMessage(`{"type":"array","prefixItems":[{"title":"id","type":"integer"},{"title":"reason","type":"string"}],"minItems":1}`)
	for _, tt := range []struct {
		schema json.RawMessage
		args   []string
		want   string
		fails  bool
	}{
		{object, []string{"Ann"}, `{"name":"Ann"}`, false},
		{object, []string{"Ann", "3", "true"}, `{"name":"Ann","times":3,"loud":true}`, false},
		{object, []string{"times=9223372036854775807", "name=Bo"}, `{"times":9223372036854775807,"name":"Bo"}`, false},
		{object, []string{"name=123"}, `{"name":"123"}`, false}, // a string field stays a string
		{object, []string{"tags=[1,2]", "ratio=0.5"}, `{"tags":[1,2],"ratio":0.5}`, false},
		{object, []string{`{"name":"raw"}`}, `{"name":"raw"}`, false},
		{object, []string{"unknown=x"}, `{"unknown":"x"}`, false}, // the server says what is wrong
		{object, []string{"Ann", "three"}, "", true},
		{object, []string{"Ann", "loud=true"}, "", true},
		{object, []string{"a", "1", "true", "[]", "1", "extra"}, "", true},
		{array, []string{"7", "maintenance"}, `[7,"maintenance"]`, false},
		{array, []string{"x"}, "", true},
		{array, []string{"param1=7", "param2=x"}, `[7,"x"]`, false}, // untitled items are param1, param2
		{titled, []string{"reason=maintenance", "id=7"}, `[7,"maintenance"]`, false},
		{titled, []string{"id=7"}, `[7]`, false},
		{titled, []string{"reason=x"}, "", true},                       // id before it is missing
		{titled, []string{"7", "ticket=42"}, `[7,"ticket=42"]`, false}, // not a field: a value
		{nil, []string{"math.add"}, `["math.add"]`, false},
		{nil, []string{"method=math.add"}, `{"method":"math.add"}`, false},
		{nil, nil, "", false},
	} {
		got, err := jsonParams(tt.schema, tt.args)
		if (err != nil) != tt.fails || string(got) != tt.want {
			t.Errorf("%v: %s %v, want %s (fails %v)", tt.args, got, err, tt.want, tt.fails)
		}
	}
}
