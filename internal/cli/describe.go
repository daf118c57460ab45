package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/schema"
	"github.com/nexo-project/nexo/internal/sys"
	"github.com/nexo-project/nexo/service"
)

// describe prints what a server offers (sys.describe): every method in a
// table, or one method in full; --json prints the server's JSON as is,
// for scripts.
func (m *Main) describe(fs *pflag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print the description as JSON, as sys.describe answers it")
	cf := addClientFlags(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return usageError{"describe: one METHOD at most"}
		}
		var params []byte
		if len(args) == 1 {
			params, _ = json.Marshal([]string{args[0]}) // a string always marshals
		}
		c, ctx, done, err := cf.dial(ctx, "nexo-describe")
		if err != nil {
			return err
		}
		defer done()
		out, err := c.Call(ctx, "sys.describe", params)
		if err != nil {
			return describeError(err)
		}
		if *asJSON {
			var b bytes.Buffer
			if err := json.Indent(&b, out, "", "  "); err != nil {
				return err
			}
			fmt.Fprintln(m.Stdout, b.String())
			return nil
		}
		if len(args) == 1 {
			var d service.Described
			if err := json.Unmarshal(out, &d); err != nil {
				return fmt.Errorf("describe: the server's answer: %w", err)
			}
			printMethod(m.Stdout, d)
			return nil
		}
		var cat sys.Catalog
		if err := json.Unmarshal(out, &cat); err != nil {
			return fmt.Errorf("describe: the server's answer: %w", err)
		}
		tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "METHOD\tPAYLOAD\tIDEMPOTENT\tSERVED BY\tSUMMARY")
		for _, d := range cat.Methods {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, d.Encoding, yesNo(d.Idempotent), dash(strings.Join(d.ServedBy, ", ")), d.Summary)
		}
		_ = tw.Flush()
		fmt.Fprintf(m.Stdout, "%d methods on %s; 'nexo describe METHOD' for one in full\n", len(cat.Methods), cat.Server)
		return nil
	}
}

// completeMethods names the methods of the server that --addr (or
// NEXO_ADDR) names, for a shell's completion: none when it cannot be
// reached within a second.
func (m *Main) completeMethods(ctx context.Context, fs *pflag.FlagSet, prefix string) []cobra.Completion {
	if m.settle(fs) != nil {
		return nil
	}
	addr, _ := fs.GetString("addr")
	opts, err := connFlagsOf(fs).options("nexo-completion")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts)
	if err != nil {
		return nil
	}
	defer c.Close()
	out, err := c.Call(ctx, "sys.describe", nil)
	if err != nil {
		return nil
	}
	var cat sys.Catalog
	if json.Unmarshal(out, &cat) != nil {
		return nil
	}
	var names []cobra.Completion
	for _, d := range cat.Methods {
		if strings.HasPrefix(d.Name, prefix) {
			names = append(names, cobra.CompletionWithDesc(d.Name, d.Summary))
		}
	}
	return names
}

// printMethod prints one method's description for people.
func printMethod(w io.Writer, d service.Described) {
	fmt.Fprintf(w, "%s: %s\n", d.Name, d.Summary)
	fmt.Fprintf(w, "  payload:    %s", d.Encoding)
	if d.Binary != "" {
		fmt.Fprintf(w, " (%s)", d.Binary)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  idempotent: %s\n", yesNo(d.Idempotent))
	if len(d.ServedBy) > 0 {
		fmt.Fprintf(w, "  served by:  %s\n", strings.Join(d.ServedBy, ", "))
	}
	if len(d.Errors) > 0 {
		fmt.Fprintf(w, "  errors:     %s\n", strings.Join(d.Errors, ", "))
	}
	fmt.Fprintf(w, "  params:     %s\n", paramsLine(d.Params))
	fmt.Fprintf(w, "  result:     %s\n", resultLine(d.Result))
	for _, ex := range d.Examples {
		if ex.Error != "" {
			fmt.Fprintf(w, "  example:    %s → %s\n", ex.Params, ex.Error)
		} else {
			fmt.Fprintf(w, "  example:    %s → %s\n", ex.Params, ex.Result)
		}
	}
}

// paramsLine says a params schema in a line: [a integer, b integer] by
// position, {name string} by name, "none" for none; --json gives the
// schema itself.
func paramsLine(s json.RawMessage) string {
	p, err := schema.Read(s)
	if err != nil || len(p.Fields) == 0 {
		if strings.Contains(string(s), `"maxItems":0`) {
			return "none"
		}
		return string(s)
	}
	var fields []string
	for _, f := range p.Fields {
		field := f.Name
		if f.Type != "" {
			field += " " + f.Type
		}
		if !f.Required {
			field += " (optional)"
		}
		fields = append(fields, field)
	}
	if p.Kind == "object" {
		return "{" + strings.Join(fields, ", ") + "} by name"
	}
	return "[" + strings.Join(fields, ", ") + "] by position"
}

// resultLine says a result schema in a line: its type and description.
func resultLine(s json.RawMessage) string {
	var r struct {
		Type        any    `json:"type"`
		Description string `json:"description"`
	}
	if json.Unmarshal(s, &r) != nil {
		return string(s)
	}
	t, _ := r.Type.(string)
	switch {
	case t == "":
		t = "JSON"
	case r.Description != "":
		t += ": " + r.Description
	}
	return t
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
