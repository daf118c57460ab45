// Command nexo is the nexo server and its command-line clients in one
// binary: serve, worker, call, describe, auto, bench, clients, certs and
// version (package cli).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nexo-project/nexo/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&cli.Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}).Exit(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
