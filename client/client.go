// Package client is the Go client library for nexo's native protocol.
//
// A Client is one connection. It is safe for use by many goroutines at
// once: their calls are pipelined over the connection and matched to their
// responses by id, and their requests share writes.
//
//	c, err := client.Dial(ctx, "127.0.0.1:7070", &client.Options{Name: "me"})
//	if err != nil { ... }
//	defer c.Close()
//	q, err := c.Div(ctx, 7, 2) // 3.5
//
// Errors sent by the server are *wire.Error values, and errors.Is matches
// them against a wire.Code: errors.Is(err, wire.CodeDivisionByZero).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/batch"
	"github.com/nexo-project/nexo/wire"
)

// Errors of the connection itself. Errors from the server are *wire.Error.
var (
	// ErrClosed is returned for calls on a closed client or a lost
	// connection; the cause, if any, is wrapped with it.
	ErrClosed = errors.New("client: connection closed")
	// ErrServerDead means the server sent nothing, not even a PING, for two
	// heartbeat intervals plus a grace.
	ErrServerDead = errors.New("client: server stopped answering heartbeats")
)

// Options configure a Client. A nil *Options means all defaults.
type Options struct {
	// Name is sent in HELLO and shown in the server's client list
	// (at most 64 bytes).
	Name string
	// Token is sent in HELLO for servers that require one.
	Token string
	// MaxFrame bounds the frames accepted from the server (default
	// wire.DefaultMaxFrame).
	MaxFrame int
	// Dialer dials the TCP connection; nil means a zero net.Dialer.
	Dialer *net.Dialer
	// TLS, when set, runs the connection over TLS with these settings
	// (see certs.ClientConfig). An empty ServerName is taken from addr.
	TLS *tls.Config
	// OnEvent, when set, receives the server's EVENT frames, on the
	// client's reader goroutine: it must return quickly. payload is only
	// valid during the call.
	OnEvent func(topic string, payload []byte)
	// Trace asks the server to accept trace contexts (an extension of
	// version 1, see docs/protocol.md): HELLO carries "trace": true. A
	// nexo server of any version ignores the field if it does not know
	// it; a server written to the version 1 contract alone may not, which
	// is why this is off by default. If the server agrees, a call whose
	// ctx holds an OpenTelemetry span carries that span's context, and
	// the server's spans for the call join the caller's trace.
	Trace bool
}

// Client is a connection to a nexo server.
type Client struct {
	conn    net.Conn
	out     *batch.Writer
	welcome wire.Welcome
	onEvent func(string, []byte)
	traces  bool // asked for trace contexts, and the server granted them
	ids     atomic.Uint32
	recv    atomic.Int64  // unix ns of the last frame received
	done    chan struct{} // closed when the reader exits
	hbDone  chan struct{} // closed when the heartbeat goroutine exits

	mu      sync.Mutex
	idle    *sync.Cond       // signalled, with mu, when pending empties or the reader ends
	pending map[uint32]*call // guarded by mu
	err     error            // guarded by mu: why the connection ended
	closing bool             // guarded by mu: Close was called
	goodbye string           // guarded by mu: the server's GOODBYE reason, if it sent one
	saidBye bool             // guarded by mu: the server sent GOODBYE
}

// call is one request waiting for its answer.
type call struct {
	ch  chan struct{} // receives one value when buf or err is set
	buf []byte
	err error
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan struct{}, 1)} }}

// Dial connects to a nexo server at addr, says HELLO and waits for
// WELCOME. ctx bounds the whole handshake.
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if opts.TLS != nil {
		if conn, err = startTLS(ctx, conn, addr, opts.TLS); err != nil {
			return nil, err
		}
	}
	welcome, rd, err := Handshake(ctx, conn, opts)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return newClient(conn, welcome, rd, opts), nil
}

// startTLS runs the TLS handshake on conn, bounded by ctx.
func startTLS(ctx context.Context, conn net.Conn, addr string, cfg *tls.Config) (net.Conn, error) {
	if cfg.ServerName == "" {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// Handshake sends HELLO on a fresh connection and reads WELCOME. It returns
// the reader to keep using for the connection's later frames. Most programs
// use Dial; Handshake serves tools that drive the protocol themselves.
func Handshake(ctx context.Context, conn net.Conn, opts *Options) (wire.Welcome, *wire.Reader, error) {
	if opts == nil {
		opts = &Options{}
	}
	if len(opts.Name) > wire.MaxNameLen {
		return wire.Welcome{}, nil, fmt.Errorf("client: name is over %d bytes", wire.MaxNameLen)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{}) //nolint:errcheck // cleared best-effort; a dead conn fails later
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	hello, err := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: opts.Name, Token: opts.Token, Trace: opts.Trace})
	if err != nil {
		return wire.Welcome{}, nil, err
	}
	if _, err := conn.Write(hello); err != nil {
		return wire.Welcome{}, nil, handshakeErr(ctx, err)
	}
	rd := wire.NewReader(conn, opts.MaxFrame)
	f, err := rd.ReadFrame()
	if err != nil {
		if door := otherDoor(rd.Unread()); door != "" {
			return wire.Welcome{}, nil, fmt.Errorf("handshake: %w: the server answered in %s; native clients connect to the native door (127.0.0.1:7070 by default)", ErrWrongDoor, door)
		}
		return wire.Welcome{}, nil, handshakeErr(ctx, err)
	}
	switch f.Type {
	case wire.TypeWelcome:
		w, err := wire.ParseWelcome(f.Body)
		return w, rd, err
	case wire.TypeError:
		we, err := wire.ParseError(f.Body)
		if err != nil {
			return wire.Welcome{}, nil, err
		}
		return wire.Welcome{}, nil, fmt.Errorf("handshake: %w", we)
	}
	return wire.Welcome{}, nil, fmt.Errorf("handshake: server sent %v instead of WELCOME", f.Type)
}

// ErrWrongDoor is the error of a handshake answered in another protocol
// than the native one: the address is another door (the web door, the
// legacy door) or another server.
var ErrWrongDoor = errors.New("client: not a native door")

// otherDoor names the protocol of a peer's first bytes when they are not a
// native frame but another door's answer to our HELLO, or "".
func otherDoor(b []byte) string {
	switch {
	// The frame reader stops after a length field's 4 bytes, which may be
	// all that it holds.
	case bytes.HasPrefix(b, []byte("HTTP")):
		return "HTTP (the web or admin door, 8080 or 8222 by default)"
	case bytes.HasPrefix(b, []byte("ERRO")):
		return "the legacy protocol (the legacy door, 7071 by default)"
	}
	return ""
}

func handshakeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("handshake: %w", ctx.Err())
	}
	// The connection's deadline is ctx's: it may fire a moment before ctx
	// reports it.
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return fmt.Errorf("handshake: %w", context.DeadlineExceeded)
	}
	return fmt.Errorf("handshake: %w", err)
}

func newClient(conn net.Conn, welcome wire.Welcome, rd *wire.Reader, opts *Options) *Client {
	c := &Client{
		conn:    conn,
		welcome: welcome,
		onEvent: opts.OnEvent,
		traces:  opts.Trace && welcome.Trace,
		pending: make(map[uint32]*call),
		done:    make(chan struct{}),
		hbDone:  make(chan struct{}),
	}
	c.idle = sync.NewCond(&c.mu)
	c.out = batch.New(conn, batch.Options{Timeout: 10 * time.Second, OnError: func(err error) { c.fail(err) }})
	c.recv.Store(time.Now().UnixNano())
	go c.readLoop(rd)
	go c.heartbeat()
	return c
}

// ID returns the client id the server gave this connection.
func (c *Client) ID() uint64 { return c.welcome.ClientID }

// Welcome returns what the server said in WELCOME.
func (c *Client) Welcome() wire.Welcome { return c.welcome }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Usable returns why a new call would fail at once (the connection ended,
// Close was called, or the server said GOODBYE), or nil.
func (c *Client) Usable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unusable()
}

// Err returns why the connection ended, or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Call sends a request and waits for its response payload. When ctx has a
// deadline, the request carries it (DEADLINE) so the server stops working
// on it once the caller has stopped waiting.
func (c *Client) Call(ctx context.Context, method string, payload []byte) ([]byte, error) {
	cl, err := c.roundTrip(ctx, method, payload)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), cl.buf...)
	putCall(cl)
	return out, nil
}

// traceContext writes the trace field of a REQUEST (wire.FlagTrace) for
// the span ctx holds, if it holds a valid one.
func traceContext(ctx context.Context, tc *[wire.TraceLen]byte) bool {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return false
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(tc[:16], tid[:])
	copy(tc[16:24], sid[:])
	tc[24] = byte(sc.TraceFlags())
	return true
}

// roundTrip does one call. The returned call holds the response in buf;
// the caller puts it back in the pool.
func (c *Client) roundTrip(ctx context.Context, method string, payload []byte) (*call, error) {
	if err := wire.CheckMethod(method); err != nil {
		return nil, err
	}
	var deadlineMS uint32
	dl, hasDeadline := ctx.Deadline()
	if hasDeadline {
		left := time.Until(dl)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		deadlineMS = uint32(min((left+time.Millisecond-1)/time.Millisecond, math.MaxUint32))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := c.ids.Add(1)
	if id == 0 {
		id = c.ids.Add(1)
	}
	cl := callPool.Get().(*call)
	c.mu.Lock()
	if err := c.unusable(); err != nil {
		c.mu.Unlock()
		callPool.Put(cl)
		return nil, err
	}
	c.pending[id] = cl
	c.mu.Unlock()

	b := c.out.Begin()
	var tc [wire.TraceLen]byte
	flags := wire.Flags(0)
	if hasDeadline {
		flags |= wire.FlagDeadline
	}
	if c.traces && traceContext(ctx, &tc) {
		flags |= wire.FlagTrace
	}
	b = wire.AppendRequestFlags(b, id, flags, deadlineMS, tc[:], method, payload)
	if err := c.out.Commit(b); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	_ = c.out.Flush() // a failed write fails the connection and this call with it

	select {
	case <-cl.ch:
		if cl.err != nil {
			err := cl.err
			putCall(cl)
			return nil, err
		}
		return cl, nil
	case <-ctx.Done():
		if !c.forget(id) {
			// The reader took the call and is answering it: wait, it is
			// about to arrive, and then the call can be reused.
			<-cl.ch
			putCall(cl)
		}
		return nil, ctx.Err()
	}
}

// unusable says why no new call may start, with mu held.
func (c *Client) unusable() error {
	switch {
	case c.err != nil:
		return c.err
	case c.closing:
		return ErrClosed
	case c.saidBye:
		return &wire.Error{Code: wire.CodeShuttingDown, Msg: "the server said goodbye: " + c.goodbye}
	}
	return nil
}

// forget removes a pending call; it reports false when it was not pending
// (the reader has taken it).
func (c *Client) forget(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[id]; !ok {
		return false
	}
	delete(c.pending, id)
	if len(c.pending) == 0 {
		c.idle.Broadcast()
	}
	return true
}

func putCall(cl *call) {
	cl.err = nil
	if cap(cl.buf) > 64<<10 {
		cl.buf = nil
	}
	callPool.Put(cl)
}

// readLoop reads the server's frames until the connection ends.
func (c *Client) readLoop(rd *wire.Reader) {
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			c.fail(err)
			return
		}
		c.recv.Store(time.Now().UnixNano())
		switch f.Type {
		case wire.TypeResponse:
			c.complete(f.ID, f.Body, nil)
		case wire.TypeError:
			we, err := wire.ParseError(f.Body)
			if err != nil {
				c.fail(err)
				return
			}
			if f.ID == 0 {
				c.fail(we) // about the connection, not one request
				return
			}
			c.complete(f.ID, nil, we)
		case wire.TypePing:
			if c.out.Commit(wire.AppendFrame(c.out.Begin(), wire.TypePong, 0, f.ID, f.Body)) == nil {
				c.out.FlushAsync()
			}
		case wire.TypePong:
		case wire.TypeEvent:
			if c.onEvent != nil {
				topic, payload, _ := wire.ParseEvent(f.Body) // validated by ReadFrame
				c.onEvent(string(topic), payload)
			}
		case wire.TypeGoodbye:
			c.mu.Lock()
			c.saidBye, c.goodbye = true, string(f.Body)
			c.mu.Unlock()
		default:
			c.fail(fmt.Errorf("client: server sent %v", f.Type))
			return
		}
	}
}

// complete hands a response or error to its waiting call.
func (c *Client) complete(id uint32, body []byte, err error) {
	c.mu.Lock()
	cl := c.pending[id]
	if cl == nil {
		c.mu.Unlock()
		return // its caller gave up
	}
	delete(c.pending, id)
	if len(c.pending) == 0 {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
	cl.buf = append(cl.buf[:0], body...)
	cl.err = err
	cl.ch <- struct{}{}
}

// fail ends the connection: every pending call gets the error.
func (c *Client) fail(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	switch {
	case cause == nil || c.closing:
		c.err = ErrClosed
	case c.saidBye:
		c.err = fmt.Errorf("%w: server said goodbye (%s): %w", ErrClosed, c.goodbye, cause)
	default:
		c.err = fmt.Errorf("%w: %w", ErrClosed, cause)
	}
	calls := c.pending
	c.pending = make(map[uint32]*call)
	c.idle.Broadcast()
	err := c.err
	c.mu.Unlock()
	_ = c.conn.Close()
	c.out.Close()
	for _, cl := range calls {
		cl.err = err
		cl.ch <- struct{}{}
	}
	close(c.done) // only the first fail gets here
}

// heartbeat notices a dead server: one that sent nothing, not even a PING,
// for two announced intervals plus half of one.
func (c *Client) heartbeat() {
	defer close(c.hbDone)
	hb := time.Duration(c.welcome.HeartbeatMS) * time.Millisecond
	if hb <= 0 {
		return
	}
	t := time.NewTicker(hb / 4)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			if now.UnixNano()-c.recv.Load() > (2*hb + hb/2).Nanoseconds() {
				c.fail(ErrServerDead)
				return
			}
		}
	}
}

// Close says GOODBYE, waits for the calls in flight to be answered, and
// closes the connection. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	alive := c.err == nil
	c.mu.Unlock()
	if alive {
		if c.out.Commit(wire.AppendGoodbye(c.out.Begin(), "client closing")) == nil {
			_ = c.out.Flush()
		}
		c.mu.Lock()
		for len(c.pending) > 0 && c.err == nil {
			c.idle.Wait()
		}
		c.mu.Unlock()
		// The server closes once it has answered everything; give it a
		// moment so that neither side resets the other.
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
	}
	c.fail(nil)
	<-c.hbDone
	return nil
}

// Add returns a+b computed by the server (math.add).
func (c *Client) Add(ctx context.Context, a, b int64) (int64, error) {
	return c.intOp(ctx, "math.add", a, b)
}

// Sub returns a-b computed by the server (math.sub).
func (c *Client) Sub(ctx context.Context, a, b int64) (int64, error) {
	return c.intOp(ctx, "math.sub", a, b)
}

// Mul returns a*b computed by the server (math.mul).
func (c *Client) Mul(ctx context.Context, a, b int64) (int64, error) {
	return c.intOp(ctx, "math.mul", a, b)
}

// Div returns float64(a)/float64(b) computed by the server (math.div).
func (c *Client) Div(ctx context.Context, a, b int64) (float64, error) {
	v, err := c.word(ctx, "math.div", a, b)
	return math.Float64frombits(v), err
}

func (c *Client) intOp(ctx context.Context, method string, a, b int64) (int64, error) {
	v, err := c.word(ctx, method, a, b)
	return int64(v), err
}

// word calls a math method and returns its 8-byte result without
// allocating.
func (c *Client) word(ctx context.Context, method string, a, b int64) (uint64, error) {
	p := operands(a, b)
	cl, err := c.roundTrip(ctx, method, p[:])
	if err != nil {
		return 0, err
	}
	defer putCall(cl)
	if len(cl.buf) != 8 {
		return 0, fmt.Errorf("client: %s answered %d bytes, want 8", method, len(cl.buf))
	}
	return binary.BigEndian.Uint64(cl.buf), nil
}

// operands is the payload of every math method: a and b as big-endian int64.
func operands(a, b int64) [16]byte {
	var p [16]byte
	binary.BigEndian.PutUint64(p[:], uint64(a))
	binary.BigEndian.PutUint64(p[8:], uint64(b))
	return p
}

// Echo returns the payload as the server echoes it (sys.echo).
func (c *Client) Echo(ctx context.Context, payload []byte) ([]byte, error) {
	return c.Call(ctx, "sys.echo", payload)
}

// Info is what sys.info reports.
type Info struct {
	Server    string   `json:"server"`
	Version   string   `json:"version"`
	GoVersion string   `json:"go_version"`
	UptimeS   float64  `json:"uptime_s"`
	Clients   int      `json:"clients"`
	Methods   []string `json:"methods"`
}

// Info asks the server about itself (sys.info).
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	b, err := c.Call(ctx, "sys.info", nil)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("client: sys.info: %w", err)
	}
	return info, nil
}
