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

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// call sends one request. A JSON method takes one JSON argument,
// name=value pairs, or values in its params' order; math.* two integers.
func (m *Main) call(fs *pflag.FlagSet) runFunc {
	cf := addClientFlags(fs)
	asJSON := fs.Bool("json", false, `print {"method":...,"result":...} as JSON: a number for math.*, a JSON method's result as is, text as a string, other bytes as {"hex":...}`)
	return func(ctx context.Context, args []string) error {
		if len(args) < 1 {
			return usageError{"call: METHOD is missing (nexo call METHOD [ARG...]; nexo describe lists them)"}
		}
		method, rest := args[0], args[1:]
		binary := strings.HasPrefix(method, "math.") || method == "sys.echo"
		jsonMethod := false
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
				jsonMethod = true
				if payload, err = jsonParams(d.Params, rest); err != nil {
					return usageError{"call " + method + ": " + err.Error()}
				}
			}
		}
		resp, err := c.Call(ctx, method, payload)
		if err != nil {
			return describeError(err)
		}
		if *asJSON {
			out, _ := json.Marshal(struct { // a name and JSON always marshal
				Method string          `json:"method"`
				Result json.RawMessage `json:"result"`
			}{method, resultJSON(method, resp, jsonMethod)})
			_, err := fmt.Fprintln(m.Stdout, string(out))
			return err
		}
		fmt.Fprintln(m.Stdout, formatResult(method, resp))
		return nil
	}
}

// resultJSON is an answer as a JSON value: the number of math.* (a
// string for a quotient JSON has no number for, such as +Inf), a JSON
// method's result as it came, text as a string, and any other bytes as
// {"hex": "..."}.
func resultJSON(method string, resp []byte, jsonMethod bool) json.RawMessage {
	var v any
	switch {
	case jsonMethod && json.Valid(resp):
		return resp
	case strings.HasPrefix(method, "math.") && len(resp) == 8:
		text := formatResult(method, resp)
		if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return json.RawMessage(text)
		}
		v = text
	case utf8.Valid(resp):
		v = string(resp)
	default:
		v = map[string]string{"hex": hex.EncodeToString(resp)}
	}
	out, _ := json.Marshal(v) // a string or a map of strings
	return out
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
