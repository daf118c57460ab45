package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

type greetParams struct {
	Name string `json:"name" jsonschema:"minLength=1,maxLength=64,description=who to greet"`
}

type greeting struct {
	Greeting string `json:"greeting"`
}

func greet() service.Method {
	return service.JSON("greet.test", func(_ context.Context, _ *service.Caller, p greetParams) (greeting, error) {
		if p.Name == "nobody" {
			return greeting{}, service.Error(wire.CodeUnavailable, "nobody is home")
		}
		return greeting{"Hello, " + p.Name + "!"}, nil
	})
}

// TestJSONMethod: a typed function serves JSON params and result, its
// schemas come from its types, and params that do not fit are
// BAD_PAYLOAD naming the field, before the function runs.
func TestJSONMethod(t *testing.T) {
	m := greet()
	call := func(params string) (string, error) {
		out, err := m.Call(context.Background(), service.Request{Payload: []byte(params)}, nil)
		return string(out), err
	}
	if got, err := call(`{"name":"Ann"}`); err != nil || got != `{"greeting":"Hello, Ann!"}` {
		t.Errorf("greet Ann: %s %v", got, err)
	}
	for _, tt := range []struct{ params, want string }{
		{`{"name":""}`, "/name"},
		{`{"name":"` + strings.Repeat("x", 65) + `"}`, "/name"},
		{`{"name":7}`, "/name"},
		{`{}`, "name"},
		{`{"name":"Ann","age":3}`, "age"},
		{`[1,2]`, "the params"},
		{`{"name":`, "not JSON"},
	} {
		_, err := call(tt.params)
		if !errors.Is(err, service.ErrBadParams) || service.CodeOf(err) != wire.CodeBadPayload || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("params %s: %v, want BAD_PAYLOAD naming %q", tt.params, err, tt.want)
		}
	}
	if _, err := call(`{"name":"nobody"}`); service.CodeOf(err) != wire.CodeUnavailable || service.ErrorMessage(wire.CodeUnavailable, err) != "nobody is home" {
		t.Errorf("a handler's own code: %v", err)
	}
	d := m.Describe()
	var params map[string]any
	if err := json.Unmarshal(d.Params, &params); err != nil {
		t.Fatal(err)
	}
	name, _ := params["properties"].(map[string]any)["name"].(map[string]any)
	if params["type"] != "object" || name["type"] != "string" || name["maxLength"] != 64.0 || d.Encoding != "json" ||
		!strings.Contains(string(d.Result), `"greeting"`) || d.Errors[0] != "BAD_PAYLOAD" {
		t.Errorf("description: %+v\nparams %s\nresult %s", d, d.Params, d.Result)
	}
}

// FuzzJSONMethod: whatever a client sends as a typed JSON method's params,
// the method answers a result or BAD_PAYLOAD, and never runs its function
// with params the schema refuses.
func FuzzJSONMethod(f *testing.F) {
	for _, s := range []string{`{"name":"Ann"}`, `{"name":""}`, `{}`, `[]`, `null`, `{"name":"x","y":1}`, `{"name":7}`, `"`, `{"name":"\ud800"}`} {
		f.Add([]byte(s))
	}
	m := service.JSON("fuzz.greet", func(_ context.Context, _ *service.Caller, p greetParams) (greeting, error) {
		if n := len([]rune(p.Name)); n < 1 || n > 64 {
			panic("the function ran with params its schema refuses")
		}
		return greeting{"Hello, " + p.Name + "!"}, nil
	})
	f.Fuzz(func(t *testing.T, payload []byte) {
		out, err := m.Call(context.Background(), service.Request{Payload: payload}, nil)
		switch {
		case err == nil:
			var g greeting
			if json.Unmarshal(out, &g) != nil || !strings.HasPrefix(g.Greeting, "Hello, ") {
				t.Fatalf("%q answered %q", payload, out)
			}
		case service.CodeOf(err) != wire.CodeBadPayload:
			t.Fatalf("%q: %v, want BAD_PAYLOAD", payload, err)
		}
	})
}
