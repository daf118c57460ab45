package cli

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/wire"
)

// operations are what the automatic client picks from: the native method
// and the legacy command of each.
var operations = []struct{ method, command, symbol string }{
	{"math.add", "SUMA", "+"},
	{"math.sub", "RESTA", "-"},
	{"math.mul", "MULTIPLICACION", "*"},
	{"math.div", "DIVISION", "/"},
}

// autoConn is the automatic client's connection, in either protocol.
type autoConn interface {
	// do runs one operation and returns its result, or an error: a
	// *wire.Error for an answer that is an error, anything else for a
	// connection that is lost.
	do(ctx context.Context, op int, a, b int16) (string, error)
	// who names the connection for the log ("client 4").
	who() string
	close()
}

// The automatic client reconnects with backoff: from reconnectMin, doubled
// at each failure up to reconnectMax, with full jitter.
const (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

func (m *Main) auto(fs *pflag.FlagSet) runFunc {
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` (7071 by default with --legacy)")
	every := fs.Duration("every", 10*time.Second, "`interval` between operations")
	useLegacy := fs.Bool("legacy", false, "speak the legacy struct-packed protocol, as the original Python client")
	count := fs.Int("count", 0, "stop after this many operations answered (0: run until interrupted)")
	giveUp := fs.Duration("give-up", time.Minute, "after losing the connection, try to reconnect this long before exiting with an error")
	asJSON := fs.Bool("json", false, `print each operation as a JSON line: {"op":"math.add","a":1,"b":2,"result":3} or "error" in place of "result"`)
	cf := addConnFlags(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("auto takes no arguments, got %q", args)}
		}
		if *every <= 0 {
			return usageError{"auto: --every must be positive"}
		}
		if *useLegacy && !fs.Changed("addr") {
			*addr = "127.0.0.1:7071"
		}
		connect := func(ctx context.Context) (autoConn, error) { return dialLegacy(ctx, *addr) }
		if !*useLegacy {
			opts, err := cf.options("nexo-auto")
			if err != nil {
				return err
			}
			connect = func(ctx context.Context) (autoConn, error) { return dialNative(ctx, *addr, opts) }
		}
		conn, err := connect(ctx)
		if err != nil {
			return dialHint(err)
		}
		defer func() {
			if conn != nil {
				conn.close()
			}
		}()
		if !*asJSON {
			fmt.Fprintf(m.Stdout, "connected to %s%s\n", *addr, conn.who())
		}

		t := time.NewTicker(*every)
		defer t.Stop()
		for done := 0; ; {
			op := rand.IntN(len(operations))
			a, b := int16(rand.Uint32()), int16(rand.Uint32())
			name := operations[op].method
			if *useLegacy {
				name = operations[op].command
			}
			res, err := conn.do(ctx, op, a, b)
			var answer *wire.Error
			switch {
			case ctx.Err() != nil:
				return nil
			case err == nil && *asJSON:
				fmt.Fprintf(m.Stdout, "{\"op\":%q,\"a\":%d,\"b\":%d,\"result\":%s}\n", name, a, b, jsonNumber(res))
				done++
			case err == nil:
				fmt.Fprintf(m.Stdout, "%s %d %s %d = %s\n", name, a, operations[op].symbol, b, res)
				done++
			case errors.As(err, &answer) && !answer.Code.ClosesConn() && answer.Code != wire.CodeShuttingDown:
				if *asJSON {
					fmt.Fprintf(m.Stdout, "{\"op\":%q,\"a\":%d,\"b\":%d,\"error\":%q}\n", name, a, b, describeError(err).Error())
				} else {
					fmt.Fprintf(m.Stdout, "%s %d %s %d: %v\n", name, a, operations[op].symbol, b, describeError(err))
				}
				done++
			default:
				// Kicked, the server shutting down or gone, the network: the
				// operation was not done; connect again and go on.
				fmt.Fprintf(m.Stderr, "nexo auto: connection lost (%v); reconnecting\n", err)
				conn.close()
				if conn, err = m.reconnect(ctx, connect, *giveUp); err != nil { // conn is nil then
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("auto: gave up reconnecting to %s after %v: %w", *addr, *giveUp, dialHint(err))
				}
				fmt.Fprintf(m.Stderr, "nexo auto: reconnected to %s%s\n", *addr, conn.who())
			}
			if *count > 0 && done >= *count {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}

// reconnect dials until it succeeds, ctx ends, or giveUp has passed.
func (m *Main) reconnect(ctx context.Context, connect func(context.Context) (autoConn, error), giveUp time.Duration) (autoConn, error) {
	deadline := time.Now().Add(giveUp)
	wait := reconnectMin
	for {
		c, err := connect(ctx)
		if err == nil {
			return c, nil
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(rand.N(wait) + wait/2):
		}
		wait = min(2*wait, reconnectMax)
	}
}

// nativeAuto is a native connection.
type nativeAuto struct{ c *client.Client }

func dialNative(ctx context.Context, addr string, opts *client.Options) (autoConn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, addr, opts)
	if err != nil {
		return nil, err
	}
	return nativeAuto{c}, nil
}

func (n nativeAuto) do(ctx context.Context, op int, a, b int16) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if op == 3 {
		q, err := n.c.Div(ctx, int64(a), int64(b))
		return strconv.FormatFloat(q, 'f', -1, 64), err
	}
	f := [...]func(context.Context, int64, int64) (int64, error){n.c.Add, n.c.Sub, n.c.Mul}[op]
	r, err := f(ctx, int64(a), int64(b))
	return strconv.FormatInt(r, 10), err
}

func (n nativeAuto) who() string { return " as client " + strconv.FormatUint(n.c.ID(), 10) }
func (n nativeAuto) close()      { _ = n.c.Close() }

// legacyAuto is a legacy connection: one packet, one line.
type legacyAuto struct {
	c  net.Conn
	br *bufio.Reader
}

func dialLegacy(ctx context.Context, addr string) (autoConn, error) {
	c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return legacyAuto{c, bufio.NewReader(c)}, nil
}

func (l legacyAuto) do(_ context.Context, op int, a, b int16) (string, error) {
	_ = l.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := l.c.Write(legacy.Append(nil, binary.LittleEndian, operations[op].command, a, b)); err != nil {
		return "", err
	}
	line, err := l.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return legacy.ParseReply(line)
}

func (l legacyAuto) who() string { return "" }
func (l legacyAuto) close()      { _ = l.c.Close() }

// jsonNumber is text that is a number as a JSON number, and anything else
// (a legacy server's "inf") as a JSON string.
func jsonNumber(text string) string {
	if f, err := strconv.ParseFloat(text, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && json.Valid([]byte(text)) {
		return text
	}
	return strconv.Quote(text)
}
