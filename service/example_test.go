package service_test

import (
	"context"
	"fmt"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// A JSON method is a typed Go function; its schemas come from its types,
// and params that do not fit never reach it.
func ExampleJSON() {
	type params struct {
		Name string `json:"name" jsonschema:"minLength=1,maxLength=64"`
	}
	type result struct {
		Greeting string `json:"greeting"`
	}
	greet := service.JSON("greet.go", func(_ context.Context, _ *service.Caller, p params) (result, error) {
		if p.Name == "Bob" {
			return result{}, service.Error(wire.CodeUnavailable, "Bob is out")
		}
		return result{"Hello, " + p.Name + "!"}, nil
	})
	greet.Summary = "greets a name of 1 to 64 characters"
	greet.Idempotent = true

	ctx := context.Background()
	for _, params := range []string{`{"name":"Ann"}`, `{"name":""}`, `{"name":"Bob"}`} {
		out, err := greet.Call(ctx, service.Request{Payload: []byte(params)}, nil)
		if err != nil {
			fmt.Println(service.CodeOf(err), err)
			continue
		}
		fmt.Println(string(out))
	}
	fmt.Println(string(greet.Describe().Params))
	// Output:
	// {"greeting":"Hello, Ann!"}
	// BAD_PAYLOAD service: invalid params: at '/name': minLength: got 0, want 1
	// UNAVAILABLE nexo: UNAVAILABLE: Bob is out
	// {"properties":{"name":{"type":"string","maxLength":64,"minLength":1}},"additionalProperties":false,"type":"object","required":["name"]}
}

// A registry holds the methods a process serves; every door dispatches
// through it, and sys.describe publishes its descriptions.
func ExampleRegistry() {
	reg := service.NewRegistry()
	err := reg.Register(service.Method{
		Name: "clock.zero", Summary: "always 0", Inline: true, Idempotent: true,
		Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
			return append(dst, '0'), nil
		},
	})
	fmt.Println(err, reg.Names(false))
	d := reg.Describe(false)[0]
	fmt.Println(d.Name, d.Encoding, d.Idempotent)
	// Output:
	// <nil> [clock.zero]
	// clock.zero json true
}
