package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nexo-project/nexo/client"
)

// kick disconnects a client (sys.kick, admins only): it gets GOODBYE with
// the reason, its requests in flight are answered, then it is closed.
func (m *Main) kick(ctx context.Context, args []string) error {
	fs := m.flags("kick", "ID")
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` (native door)")
	reason := fs.String("reason", "", "what the client is told (default: by admin <your address>)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	asJSON := fs.Bool("json", false, `print {"kicked": ID} as JSON`)
	cf := addConnFlags(fs)
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"kick: give one client ID"}
	}
	id, err := strconv.ParseUint(fs.Arg(0), 10, 64)
	if err != nil || id == 0 {
		return usageError{fmt.Sprintf("kick: %q is not a client id (a positive integer; nexo clients lists them)", fs.Arg(0))}
	}
	opts, err := cf.options("nexo-kick")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, *addr, opts)
	if err != nil {
		return dialHint(err)
	}
	defer c.Close()
	params, _ := json.Marshal([]any{id, *reason}) // numbers and a string always marshal
	if *reason == "" {
		params, _ = json.Marshal([]any{id})
	}
	out, err := c.Call(ctx, "sys.kick", params)
	if err != nil {
		return describeError(err)
	}
	if string(out) != "true" {
		return fmt.Errorf("no connected client %d", id)
	}
	if *asJSON {
		fmt.Fprintf(m.Stdout, "{\"kicked\":%d}\n", id)
		return nil
	}
	fmt.Fprintf(m.Stdout, "kicked client %d\n", id)
	return nil
}
