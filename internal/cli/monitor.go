package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/status"
)

// monitorLong and monitorExample are nexo monitor's help.
const (
	monitorLong = `Print the requests and answers passing through the server as they happen,
one line each, in the spirit of Redis's MONITOR: the time, the client's id
and door, the method, its params, its result or error, and how long the
server took. Every door is shown: native, legacy (SUMA as math.add), and
JSON-RPC over the WebSocket and POST /rpc (client 0). --client and --method
keep one client's or one method's requests; --json prints each event as
the server sends it (docs/protocol.md, "The monitor stream").

Admins only, as nexo clients: callers on loopback when the server has no
admin token, and callers that give it (--token). Watching costs the server
nothing when nobody watches, and never holds a request back: when the
monitor cannot keep up, events are dropped, and "lost N events" says so on
stderr. Ctrl-C ends it.`
	monitorExample = `  nexo monitor
  nexo monitor --client 12
  nexo monitor --method math.div --json`
)

// monitorHeld is how many events the monitor holds while it prints: past
// that it drops them, counts them, and says so, rather than stop reading
// its connection (whose heartbeats must be answered).
const monitorHeld = 1024

// monitor streams the requests and answers passing through the server
// (sys.monitor) until ctx ends.
func (m *Main) monitor(fs *pflag.FlagSet) runFunc {
	clientID := fs.Uint64("client", 0, "only this client's requests (an `id`, as nexo clients lists them; default: every client's)")
	method := fs.String("method", "", "only this `method`'s requests (default: every method's)")
	asJSON := fs.Bool("json", false, "print each event as JSON, one a line")
	cf := clientFlags{
		addr:    fs.String("addr", "127.0.0.1:7070", "server `address` (native door)"),
		timeout: fs.Duration("timeout", 10*time.Second, "give up connecting and starting the watch after this long"),
		conn:    addConnFlags(fs),
	}
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("monitor takes no arguments, got %q (--client ID, --method M)", args)}
		}
		opts, err := cf.conn.options("nexo-monitor")
		if err != nil {
			return err
		}
		q := newMonitorQueue()
		opts.OnEvent = q.onEvent
		dialCtx, cancel := context.WithTimeout(ctx, *cf.timeout)
		defer cancel()
		c, err := client.Dial(dialCtx, *cf.addr, opts)
		if err != nil {
			return dialHint(err)
		}
		defer c.Close()
		if err := startMonitor(dialCtx, c, *clientID, *method); err != nil {
			return err
		}
		return runMonitor(ctx, c, q, *asJSON, m.Stdout, m.Stderr)
	}
}

// startMonitor asks the server for the stream (sys.monitor), of one
// client's requests when clientID is not 0, of one method's when method
// is not empty.
func startMonitor(ctx context.Context, c *client.Client, clientID uint64, method string) error {
	params, _ := json.Marshal(struct { // a number and a string always marshal
		Client uint64 `json:"client,omitempty"`
		Method string `json:"method,omitempty"`
	}{clientID, method})
	_, err := c.Call(ctx, "sys.monitor", params)
	if err != nil {
		return forAdmins("sys.monitor", err)
	}
	return nil
}

// monitorQueue hands the events the client's reader receives to the
// printer, without ever making the reader wait.
type monitorQueue struct {
	events  chan []byte
	dropped atomic.Uint64 // events the printer had no room for
}

func newMonitorQueue() *monitorQueue {
	return &monitorQueue{events: make(chan []byte, monitorHeld)}
}

// onEvent is the client's OnEvent: it keeps a copy of each monitor event.
func (q *monitorQueue) onEvent(topic string, payload []byte) {
	if topic != server.TopicMonitor {
		return
	}
	select {
	case q.events <- bytes.Clone(payload):
	default:
		// No room: a notice of the server's losses is added to ours, not
		// counted as one (the notice of thousands lost was lost itself).
		var notice struct {
			Lost uint64 `json:"lost"`
		}
		if json.Unmarshal(payload, &notice) == nil && notice.Lost > 0 {
			q.dropped.Add(notice.Lost)
			return
		}
		q.dropped.Add(1)
	}
}

// runMonitor prints the events of the watch c started, as lines or as
// JSON, and the events lost (the server's notices and its own drops) on
// stderr, until ctx ends (nil) or the connection does (why).
func runMonitor(ctx context.Context, c *client.Client, q *monitorQueue, asJSON bool, stdout, stderr io.Writer) error {
	var line []byte
	for {
		var raw []byte
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			if err := c.Err(); err != nil {
				return fmt.Errorf("the server ended the monitor: %w", describeError(err))
			}
			return errors.New("the server ended the monitor")
		case raw = <-q.events:
		}
		var ev status.MonitorEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("the server sent an event that is not one: %w", err)
		}
		if n := ev.Lost + q.dropped.Swap(0); n > 0 {
			fmt.Fprintf(stderr, "lost %d events\n", n)
		}
		if ev.Lost > 0 {
			continue
		}
		if asJSON {
			line = append(line[:0], raw...)
		} else {
			line = appendMonitorLine(line[:0], ev)
		}
		if _, err := stdout.Write(append(line, '\n')); err != nil {
			return err
		}
		// Events this side dropped are told once the queue is empty, not
		// only with the next event: the last ones lost may be the last
		// ones sent for a long time.
		if len(q.events) == 0 {
			if n := q.dropped.Swap(0); n > 0 {
				fmt.Fprintf(stderr, "lost %d events\n", n)
			}
		}
	}
}

// appendMonitorLine appends an event as one line:
//
//	16:28:19.123456 [7 native] math.add [1,2] → 3 (3.2µs)
//	16:28:19.223456 [9 legacy] math.div [1,0] → DIVISION_BY_ZERO: calc: division by zero (1.1µs)
//
// Every string of the event may come from a client that is not an admin
// (a method's name, its params, an error's message): each goes through
// appendPrintable, so that none drives the terminal.
func appendMonitorLine(b []byte, ev status.MonitorEvent) []byte {
	b = ev.Time.Local().AppendFormat(b, "15:04:05.000000")
	b = append(b, " ["...)
	b = strconv.AppendUint(b, ev.Client, 10)
	b = append(b, ' ')
	b = appendPrintable(b, ev.Door)
	b = append(b, "] "...)
	b = appendPrintable(b, ev.Method)
	if len(ev.Params) > 0 || ev.ParamsLen > 0 { // a call without params shows none
		b = append(b, ' ')
		b = appendShown(b, ev.Params, ev.ParamsLen)
	}
	b = append(b, " → "...)
	if e := ev.Error; e != nil {
		b = appendPrintable(b, e.Name)
		if e.Message != "" {
			b = append(b, ": "...)
			b = appendPrintable(b, e.Message)
		}
	} else {
		b = appendShown(b, ev.Result, ev.ResultLen)
	}
	b = append(b, " ("...)
	b = append(b, time.Duration(ev.DurationUS*1e3).Round(100*time.Nanosecond).String()...)
	return append(b, ')')
}

// appendShown appends params or a result: its JSON on one line, or its
// size when it has no JSON form. JSON strings may hold DEL and the C1
// controls unescaped: they are escaped too.
func appendShown(b []byte, v json.RawMessage, n int) []byte {
	if len(v) == 0 {
		return fmt.Appendf(b, "<%d bytes>", n)
	}
	var compact bytes.Buffer
	if json.Compact(&compact, v) != nil {
		return appendPrintable(b, string(v))
	}
	return appendPrintable(b, compact.String())
}

// appendPrintable appends s with its control characters (C0, DEL, C1)
// and the bytes that are not UTF-8 escaped as Go's %q escapes them
// ("\x1b", "\n", "\u0085", "\xff"), and the rest as it is: text that
// reaches a terminal as text, never as escape sequences.
func appendPrintable(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unicode.IsControl(r) || (r == utf8.RuneError && n == 1) {
			q := strconv.QuoteToASCII(s[i : i+n])
			b = append(b, q[1:len(q)-1]...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}
