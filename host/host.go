// Package host runs services of one's own in a Go program, beside the
// services nexo ships, in either of nexo's two roles:
//
//   - Serve embeds the whole server: every door (native, legacy, web with
//     the GUI, /rpc and /ws), sessions, limits, metrics and the admin
//     listener, as `nexo serve` runs them;
//   - Work serves them as a worker over NATS to gateways, as `nexo worker`
//     does.
//
// Both take the command's own arguments (flags, NEXO_* environment, a
// config file), so a program's users configure it as they would nexo, and
// both return when ctx ends, after draining. Methods are defined with
// package service.
package host

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nexo-project/nexo/internal/cli"
	"github.com/nexo-project/nexo/service"
)

// Options say where a role writes and reads what the command line would.
// The zero Options use the process's: os.Stdout, os.Stderr, os.Getenv.
type Options struct {
	Stdout, Stderr io.Writer
	// Getenv reads NEXO_* settings; nil means os.Getenv.
	Getenv func(string) string
}

// Serve runs the whole server with methods served beside math and sys:
// args are those of `nexo serve` (nil for its defaults: every door on
// 127.0.0.1, see `nexo serve -h`). It returns nil once ctx ends and the
// server has drained, or the error that stopped it; a mistake in args
// is an error too.
func Serve(ctx context.Context, o Options, args []string, methods ...service.Method) error {
	return run(ctx, o, "serve", args, methods)
}

// Work serves methods (and, with --services, the services nexo ships) to
// gateways over NATS: args are those of `nexo worker` (--nats URL, ...). It
// returns nil once ctx ends and the requests in hand are answered.
func Work(ctx context.Context, o Options, args []string, methods ...service.Method) error {
	return run(ctx, o, "worker", args, methods)
}

func run(ctx context.Context, o Options, role string, args []string, methods []service.Method) error {
	m := &cli.Main{Stdout: o.Stdout, Stderr: o.Stderr, Getenv: o.Getenv, Methods: methods}
	if m.Stdout == nil {
		m.Stdout = os.Stdout
	}
	if m.Stderr == nil {
		m.Stderr = os.Stderr
	}
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	if err := m.Run(ctx, append([]string{role}, args...)); err != nil {
		return fmt.Errorf("nexo %s: %w", role, err)
	}
	return nil
}
