package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
)

// kick disconnects a client (sys.kick, admins only): it gets GOODBYE with
// the reason, its requests in flight are answered, then it is closed.
func (m *Main) kick(fs *pflag.FlagSet) runFunc {
	reason := fs.String("reason", "", "what the client is told (default: by admin <your address>)")
	asJSON := fs.Bool("json", false, `print {"kicked": ID} as JSON`)
	cf := addClientFlags(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return usageError{"kick: give one client ID"}
		}
		id, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil || id == 0 {
			return usageError{fmt.Sprintf("kick: %q is not a client id (a positive integer; nexo clients lists them)", args[0])}
		}
		c, ctx, done, err := cf.dial(ctx, "nexo-kick")
		if err != nil {
			return err
		}
		defer done()
		params, _ := json.Marshal([]any{id, *reason}) // numbers and a string always marshal
		if *reason == "" {
			params, _ = json.Marshal([]any{id})
		}
		out, err := c.Call(ctx, "sys.kick", params)
		if err != nil {
			return forAdmins("sys.kick", err)
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
}
