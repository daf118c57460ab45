// Command greet-go is a service of one's own, served through nexo: the
// JSON method greet.go, with params {"name": string} (1 to 64 characters)
// and result {"greeting": "Hello, <name>!"}. It imports only nexo's public
// packages, service and host.
//
//	go run ./examples/greet-go --serve                           # the whole server, greet.go beside math and sys
//	go run ./examples/greet-go --nats nats://127.0.0.1:4222      # a worker, for the cluster's gateways
//
// Arguments after the flags go to `nexo serve` or `nexo worker`
// (--native-addr, --log-level, ...).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nexo-project/nexo/host"
	"github.com/nexo-project/nexo/service"
)

// params are greet.go's params; the jsonschema tag bounds the name, and
// nexo checks every call against it before greet runs.
type params struct {
	Name string `json:"name" jsonschema:"minLength=1,maxLength=64,description=who to greet"`
}

// result is greet.go's result.
type result struct {
	Greeting string `json:"greeting"`
}

// greet is the method: a typed Go function, described for discovery.
func greet() service.Method {
	m := service.JSON("greet.go", func(_ context.Context, _ *service.Caller, p params) (result, error) {
		return result{Greeting: "Hello, " + p.Name + "!"}, nil
	})
	m.Summary = "greets a name of 1 to 64 characters"
	m.Idempotent = true
	m.Desc.Examples = []service.Example{
		{Params: json.RawMessage(`{"name":"Ann"}`), Result: json.RawMessage(`{"greeting":"Hello, Ann!"}`)},
		{Params: json.RawMessage(`{"name":""}`), Error: "BAD_PAYLOAD"},
	}
	return m
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first argument picks the role; the rest are nexo's own flags.
	args := os.Args[1:]
	var err error
	switch {
	case len(args) >= 1 && (args[0] == "--serve" || args[0] == "-serve"):
		err = host.Serve(ctx, host.Options{}, args[1:], greet())
	case len(args) >= 2 && (args[0] == "--nats" || args[0] == "-nats"):
		err = host.Work(ctx, host.Options{}, append([]string{"--nats", args[1], "--services", "none"}, args[2:]...), greet())
	case len(args) >= 1 && strings.HasPrefix(args[0], "--nats="):
		err = host.Work(ctx, host.Options{}, append([]string{args[0], "--services", "none"}, args[1:]...), greet())
	default:
		fmt.Fprintln(os.Stderr, "usage: greet-go --serve [nexo serve flags]\n       greet-go --nats URL [nexo worker flags]")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "greet-go:", err)
		os.Exit(1)
	}
}
