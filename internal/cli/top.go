package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/top"
	"github.com/nexo-project/nexo/wire"
)

// topLong and topExample are nexo top's help.
const (
	topLong = `A live view of a server in the terminal, in the spirit of htop: the
connected clients with their door, address, heartbeat RTT, requests per
second, errors and requests in flight; totals per door; the recently
closed and why; and, on a gateway (--nats), its gateways and workers.
It refreshes every --interval and keeps retrying while the server is
away. Admins only, as nexo clients: connect over loopback or with an
admin token.

Keys: up and down select a client; s or > sorts by the next column, <
by the one before, r reverses; / filters by id, name, door or address
(enter keeps the filter, esc clears it); k kicks the selected client
once y confirms; q or Ctrl-C quits.`
	topExample = `  nexo top
  nexo top --addr 10.0.0.5:7070 --token "$ADMIN_TOKEN" --interval 2s`
)

// top runs the live view (package top) against the native door.
func (m *Main) top(fs *pflag.FlagSet) runFunc {
	interval := fs.Duration("interval", top.DefaultInterval, "refresh every `interval`")
	cf := addClientFlags(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("top takes no arguments, got %q", args)}
		}
		if *interval <= 0 {
			return usageError{fmt.Sprintf("--interval %s: want a positive duration", *interval)}
		}
		if !isTerminal(os.Stdin) || !isTerminal(m.Stdout) {
			return errors.New("top needs a terminal (nexo clients prints the list once)")
		}
		opts, err := cf.conn.options("nexo-top")
		if err != nil {
			return err
		}
		src := top.NewClientSource(*cf.addr, func(ctx context.Context) (*client.Client, error) {
			c, err := client.Dial(ctx, *cf.addr, opts)
			if err != nil {
				return nil, dialHint(err)
			}
			return c, nil
		})
		defer src.Close()
		// One poll first: a caller who is not an admin is told so once,
		// rather than by a view that retries for ever. A server that is
		// down is left to the view, which retries.
		pctx, cancel := context.WithTimeout(ctx, *cf.timeout)
		_, err = src.Poll(pctx)
		cancel()
		if errors.Is(err, wire.CodeUnknownMethod) {
			return forAdmins("sys.clients", err)
		}
		return top.Run(ctx, src, top.Options{Interval: *interval, Timeout: *cf.timeout, Target: *cf.addr}, os.Stdin, m.Stdout)
	}
}
