package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/wire"
)

func (m *Main) call(ctx context.Context, args []string) error {
	fs := m.flags("call", "METHOD [ARG...]")
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` (native door)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	cf := addConnFlags(fs)
	if err := m.parse(fs, args); err != nil {
		return err
	}
	opts, err := cf.options("nexo-call")
	if err != nil {
		return err
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return usageError{"call: METHOD is missing"}
	}
	method, rest := fs.Arg(0), fs.Args()[1:]
	payload, err := encodeArgs(method, rest)
	if err != nil {
		return usageError{"call: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := client.Dial(ctx, *addr, opts)
	if err != nil {
		return dialHint(err)
	}
	defer c.Close()
	resp, err := c.Call(ctx, method, payload)
	if err != nil {
		return describeError(err)
	}
	fmt.Fprintln(m.Stdout, formatResult(method, resp))
	return nil
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
