package cli

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

func (m *Main) call(ctx context.Context, args []string) error {
	fs := m.flags("call", "METHOD [ARG...]  (a JSON method takes one JSON argument, name=value pairs, or values in its params' order)")
	cf := addClientFlags(fs)
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return usageError{"call: METHOD is missing"}
	}
	method, rest := fs.Arg(0), fs.Args()[1:]
	binary := strings.HasPrefix(method, "math.") || method == "sys.echo"
	payload, err := encodeArgs(method, rest)
	if binary && err != nil {
		return usageError{"call: " + err.Error()}
	}
	c, ctx, done, err := cf.dial(ctx, "nexo-call")
	if err != nil {
		return err
	}
	defer done()
	if !binary {
		// A JSON method's params are built from its schema; the server
		// describes it (a server without sys.describe gets the arguments
		// joined by spaces, as before).
		d, err := describeMethod(ctx, c, method)
		if err != nil {
			return describeError(err)
		}
		if d != nil && d.Encoding == "json" {
			if payload, err = jsonParams(d.Params, rest); err != nil {
				return usageError{"call " + method + ": " + err.Error()}
			}
		}
	}
	resp, err := c.Call(ctx, method, payload)
	if err != nil {
		return describeError(err)
	}
	fmt.Fprintln(m.Stdout, formatResult(method, resp))
	return nil
}

// describeMethod asks the server to describe a method: nil when the
// server cannot (it has no sys.describe).
func describeMethod(ctx context.Context, c *client.Client, method string) (*service.Described, error) {
	params, _ := json.Marshal([]string{method}) // a string always marshals
	out, err := c.Call(ctx, "sys.describe", params)
	if err != nil {
		if we, ok := errors.AsType[*wire.Error](err); ok && we.Code == wire.CodeUnknownMethod && !strings.Contains(we.Msg, method) {
			return nil, nil // sys.describe itself is unknown: an older server
		}
		return nil, err
	}
	var d service.Described
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("the server's description of %s: %w", method, err)
	}
	return &d, nil
}

// encodeArgs turns command-line arguments into a method's payload: two
// integers for math.*, the arguments joined by spaces otherwise.
func encodeArgs(method string, args []string) ([]byte, error) {
	if strings.HasPrefix(method, "math.") {
		if len(args) != 2 {
			return nil, fmt.Errorf("%s takes two integers, got %d arguments", method, len(args))
		}
		var ab [2]int64
		for i, s := range args {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a 64-bit integer", s)
			}
			ab[i] = v
		}
		return calc.AppendOperands(nil, ab[0], ab[1]), nil
	}
	if len(args) == 0 {
		return nil, nil
	}
	return []byte(strings.Join(args, " ")), nil
}

// formatResult prints a response: the number for math.*, the text for
// text payloads, hex for anything else.
func formatResult(method string, resp []byte) string {
	if strings.HasPrefix(method, "math.") && len(resp) == 8 {
		v := binary.BigEndian.Uint64(resp)
		if method == "math.div" {
			return string(calc.AppendQuotient(nil, math.Float64frombits(v)))
		}
		return strconv.FormatInt(int64(v), 10)
	}
	if utf8.Valid(resp) {
		return string(resp)
	}
	return hex.EncodeToString(resp)
}

// describeError puts the protocol error's name first, as scripts expect.
func describeError(err error) error {
	if we, ok := err.(*wire.Error); ok {
		if we.Msg == "" {
			return fmt.Errorf("%s", we.Code.String())
		}
		return fmt.Errorf("%s: %s", we.Code.String(), we.Msg)
	}
	return err
}
