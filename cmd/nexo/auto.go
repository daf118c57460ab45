package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
)

// operations are what the automatic client picks from: the native method
// and the legacy command of each.
var operations = []struct{ method, command, symbol string }{
	{"math.add", "SUMA", "+"},
	{"math.sub", "RESTA", "-"},
	{"math.mul", "MULTIPLICACION", "*"},
	{"math.div", "DIVISION", "/"},
}

func (m *Main) auto(ctx context.Context, args []string) error {
	fs := m.flags("auto", "")
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` (7071 by default with --legacy)")
	every := fs.Duration("every", 10*time.Second, "`interval` between operations")
	useLegacy := fs.Bool("legacy", false, "speak the legacy struct-packed protocol, as the original Python client")
	count := fs.Int("count", 0, "stop after this many operations (0: run until interrupted)")
	cf := addConnFlags(fs)
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if *every <= 0 {
		return usageError{"auto: --every must be positive"}
	}
	if *useLegacy && !m.given(fs, "addr") {
		*addr = "127.0.0.1:7071"
	}
	var do func(ctx context.Context, op int, a, b int16) (string, error)
	if *useLegacy {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		do = func(_ context.Context, op int, a, b int16) (string, error) {
			if _, err := conn.Write(legacy.Append(nil, binary.LittleEndian, operations[op].command, a, b)); err != nil {
				return "", err
			}
			line, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			return legacy.ParseReply(line)
		}
	} else {
		opts, err := cf.options("nexo-auto")
		if err != nil {
			return err
		}
		c, err := client.Dial(ctx, *addr, opts)
		if err != nil {
			return dialHint(err)
		}
		defer c.Close()
		fmt.Fprintf(m.Stdout, "connected to %s as client %d\n", *addr, c.ID())
		do = func(ctx context.Context, op int, a, b int16) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if op == 3 {
				q, err := c.Div(ctx, int64(a), int64(b))
				return strconv.FormatFloat(q, 'f', -1, 64), err
			}
			f := [...]func(context.Context, int64, int64) (int64, error){c.Add, c.Sub, c.Mul}[op]
			r, err := f(ctx, int64(a), int64(b))
			return strconv.FormatInt(r, 10), err
		}
	}

	t := time.NewTicker(*every)
	defer t.Stop()
	for n := 1; ; n++ {
		op := rand.IntN(len(operations))
		a, b := int16(rand.Uint32()), int16(rand.Uint32())
		name := operations[op].method
		if *useLegacy {
			name = operations[op].command
		}
		res, err := do(ctx, op, a, b)
		switch {
		case err == nil:
			fmt.Fprintf(m.Stdout, "%s %d %s %d = %s\n", name, a, operations[op].symbol, b, res)
		case ctx.Err() != nil:
			return nil
		default:
			if _, isNet := err.(net.Error); isNet {
				return err
			}
			fmt.Fprintf(m.Stdout, "%s %d %s %d: %v\n", name, a, operations[op].symbol, b, describeError(err))
		}
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
