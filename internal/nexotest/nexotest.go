// Package nexotest starts real nexo servers on loopback for tests and
// speaks the protocol at the byte level, so that tests check what actually
// crosses the socket.
package nexotest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexo-project/nexo/internal/admin"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/web"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Server is a running server with every door on a 127.0.0.1 ephemeral
// port.
type Server struct {
	*server.Server
	Native string // native door address
	Legacy string // legacy door address
	Web    string // web door address (GUI, /rpc, /ws)
	Admin  string // admin listener address
	Reg    *service.Registry
	errc   chan error

	metrics prometheus.Gatherer // what the admin door's /metrics serves
}

// SleepMethod is "test.sleep": it waits for the big-endian uint32 of
// milliseconds that begins its payload (JSON-RPC: [ms]), or until its context ends,
// and answers "slept". It is not inline, so it runs concurrently.
func SleepMethod() service.Method {
	return service.Method{
		Name: "test.sleep",
		JSON: &service.JSONCodec{
			Params: func(params, dst []byte) ([]byte, error) {
				var p [1]uint32
				if err := json.Unmarshal(params, &p); err != nil {
					return dst, service.ErrBadParams
				}
				return binary.BigEndian.AppendUint32(dst, p[0]), nil
			},
			Result: func(payload, dst []byte) ([]byte, error) { return strconv.AppendQuote(dst, string(payload)), nil },
		},
		Handler: func(ctx context.Context, req service.Request, dst []byte) ([]byte, error) {
			if len(req.Payload) < 4 { // what follows is padding, for tests of sizes
				return dst, service.ErrBadPayload
			}
			t := time.NewTimer(time.Duration(binary.BigEndian.Uint32(req.Payload)) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return append(dst, "slept"...), nil
			case <-ctx.Done():
				return dst, ctx.Err()
			}
		},
	}
}

// PanicMethod is "test.panic": a handler with a bug.
func PanicMethod() service.Method {
	return service.Method{Name: "test.panic", Inline: true,
		Handler: func(context.Context, service.Request, []byte) ([]byte, error) { panic("test.panic was called") }}
}

// FastConfig is the default configuration with a short linger, so that
// tests that close connections do not wait the default 2s.
func FastConfig() server.Config {
	cfg := server.DefaultConfig()
	cfg.Linger = 200 * time.Millisecond
	return cfg
}

// Options are what Start may add to the server's Config.
type Options struct {
	// OriginPatterns for the web door's WebSocket.
	OriginPatterns []string
	// Catalog, when set, says what the registry holds instead of every
	// service nexo ships plus the test methods (a gateway's stubs, say).
	// Its Server and Version are filled in: the server's own methods
	// (sys.info, sys.clients, sys.subscribe, ...) are always there.
	Catalog func(srv *server.Server) (catalog.Options, error)
	// Cluster answers the admin door's /api/clients?scope=cluster.
	Cluster func(ctx context.Context) (any, error)
	// Collectors returns more metrics for the admin door's /metrics; it
	// is called after Catalog.
	Collectors func() []prometheus.Collector
}

// Start runs a server with the math, sys and test methods on every door. It
// is shut down when the test ends, and the test fails if goroutines are
// left behind.
func Start(t testing.TB, cfg server.Config) *Server {
	return StartWith(t, cfg, Options{})
}

// StartWith is Start with Options.
func StartWith(t testing.TB, cfg server.Config, opts Options) *Server {
	t.Helper()
	base := ProjectGoroutines()
	reg := service.NewRegistry()
	var log *slog.Logger
	if os.Getenv("NEXO_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Core == "" {
		// NEXO_TEST_CORE runs a test suite on the core it names (the
		// default is the server's).
		cfg.Core = os.Getenv("NEXO_TEST_CORE")
	}
	srv, err := server.New(cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	co := catalog.Options{Extra: []service.Method{SleepMethod(), PanicMethod()}}
	if opts.Catalog != nil {
		if co, err = opts.Catalog(srv); err != nil {
			t.Fatal(err)
		}
	}
	co.Server, co.Version = srv, srv.Config().Version
	if err := catalog.Register(reg, co); err != nil {
		t.Fatal(err)
	}
	var collectors []prometheus.Collector
	if opts.Collectors != nil {
		collectors = opts.Collectors()
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	native, leg, webLn, adminLn := listen(), listen(), listen(), listen()
	s := &Server{Server: srv, Native: native.Addr().String(), Legacy: leg.Addr().String(),
		Web: webLn.Addr().String(), Admin: adminLn.Addr().String(), Reg: reg, errc: make(chan error, 2)}
	adminHandler, err := admin.Handler(admin.Options{Server: srv, Listen: s.Admin, Log: log, Cluster: opts.Cluster, Collectors: collectors})
	if err != nil {
		t.Fatal(err)
	}
	s.metrics, _ = admin.Registry(srv, collectors...) // the same collectors registered once already
	// The HTTP servers nexo serve runs, with their limits.
	webSrv := srv.HTTPServer(web.DoorWeb, web.Handler(web.Options{Server: srv, Listen: s.Web, OriginPatterns: opts.OriginPatterns, Log: log}), nil)
	adminSrv := srv.HTTPServer(admin.Door, adminHandler, nil)
	// Start the server's own loops here, not in the first serve goroutine:
	// a server started after this one then counts them in its goroutine
	// baseline, whether or not those goroutines have run yet.
	srv.Start()
	go func() { s.errc <- srv.ServeNative(native) }()
	go func() { s.errc <- srv.ServeLegacy(leg) }()
	// The HTTP doors admit connections as serve's do.
	go func() { _ = webSrv.Serve(srv.Listener(webLn, "web", server.HTTPRefusal)) }()                 // returns ErrServerClosed at cleanup
	go func() { _ = adminSrv.Serve(srv.AdminListener(adminLn, "admin", 256, server.HTTPRefusal)) }() // returns ErrServerClosed at cleanup
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for _, hs := range []*http.Server{webSrv, adminSrv} {
			if err := hs.Shutdown(ctx); err != nil {
				t.Errorf("HTTP shutdown: %v", err)
			}
		}
		for range 2 {
			if err := <-s.errc; !errors.Is(err, server.ErrServerClosed) {
				t.Errorf("serve returned %v, want ErrServerClosed", err)
			}
		}
		CheckGoroutines(t, base)
	})
	return s
}

// CheckGoroutines fails the test when, after a grace period, more of this
// project's goroutines run than base (from ProjectGoroutines). Goroutines
// of the runtime and the test framework (the fuzzing engine starts some) do
// not count.
func CheckGoroutines(t testing.TB, base int) {
	t.Helper()
	CheckGoroutinesWithin(t, base, 5*time.Second)
}

// CheckGoroutinesWithin is CheckGoroutines with a grace period of d; the
// failure lists the goroutines left.
func CheckGoroutinesWithin(t testing.TB, base int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n, dump := projectGoroutines()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutine leak: %d of this project's goroutines running, %d before the test\n%s", n, base, dump)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ProjectGoroutines counts the goroutines running this project's code,
// other than the caller.
func ProjectGoroutines() int {
	n, _ := projectGoroutines()
	return n
}

func projectGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var count int
	var ours []string
	// The first block is the calling goroutine.
	for _, g := range strings.Split(string(buf), "\n\n")[1:] {
		if strings.Contains(g, "github.com/nexo-project/nexo/") && !strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "testing.fRunner") {
			count++
			ours = append(ours, g)
		}
	}
	return count, strings.Join(ours, "\n\n")
}

// SyncBuffer collects output (a log, a child's stderr) written by one
// goroutine and read by another.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Conn is a raw protocol connection for tests.
type Conn struct {
	t testing.TB
	net.Conn
	Rd *wire.Reader
}

// Dial opens a raw TCP connection; it is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	return DialFrom(t, "", addr)
}

// DialFrom is Dial from a local IP address ("" for any), such as another
// loopback address (127.0.0.2) to appear as a second client machine.
func DialFrom(t testing.TB, localIP, addr string) *Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewConn(t, c)
}

// NewConn makes a test connection of a connection dialled some other way.
func NewConn(t testing.TB, c net.Conn) *Conn {
	return &Conn{t: t, Conn: c, Rd: wire.NewReader(c, 16<<20)}
}

// Hello dials and completes the handshake, returning WELCOME.
func Hello(t testing.TB, addr, name string) (*Conn, wire.Welcome) {
	t.Helper()
	c := Dial(t, addr)
	return c, c.Hello(wire.Hello{Name: name})
}

// SendHello sends a HELLO.
func (c *Conn) SendHello(h wire.Hello) {
	c.t.Helper()
	b, err := wire.AppendJSON(nil, wire.TypeHello, h)
	if err != nil {
		c.t.Fatal(err)
	}
	c.Send(b)
}

// Hello sends a HELLO and returns the WELCOME; anything else fails the test.
func (c *Conn) Hello(h wire.Hello) wire.Welcome {
	c.t.Helper()
	c.SendHello(h)
	f := c.Read()
	if f.Type != wire.TypeWelcome {
		c.t.Fatalf("got %v %q, want WELCOME", f.Type, f.Body)
	}
	w, err := wire.ParseWelcome(f.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return w
}

// Send writes raw bytes.
func (c *Conn) Send(b []byte) {
	c.t.Helper()
	if _, err := c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Read reads the next frame, skipping the server's PINGs, within 5s.
func (c *Conn) Read() wire.Frame {
	c.t.Helper()
	f, err := c.ReadErr()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// ReadErr is Read that returns the error.
func (c *Conn) ReadErr() (wire.Frame, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := c.Rd.ReadFrame()
		if err != nil || f.Type != wire.TypePing {
			return f, err
		}
	}
}

// ExpectError reads an ERROR and checks its id and code.
func (c *Conn) ExpectError(id uint32, code wire.Code) string {
	c.t.Helper()
	f := c.Read()
	if f.Type != wire.TypeError {
		c.t.Fatalf("got %v %q, want ERROR %v", f.Type, f.Body, code)
	}
	we, err := wire.ParseError(f.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if f.ID != id || we.Code != code {
		c.t.Fatalf("got ERROR id %d %v (%s), want id %d %v", f.ID, we.Code, we.Msg, id, code)
	}
	return we.Msg
}

// ExpectClosed checks that the server closes the connection (EOF or reset)
// within 5s, after any frames it still sends.
func (c *Conn) ExpectClosed() {
	c.t.Helper()
	for {
		f, err := c.ReadErr()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("the server did not close the connection")
			}
			return
		}
		if f.Type != wire.TypeGoodbye {
			c.t.Fatalf("got %v %q while waiting for the close", f.Type, f.Body)
		}
	}
}

// LegacyLine sends a legacy packet and returns the reply line.
func (c *Conn) LegacyLine(packet []byte) string {
	c.t.Helper()
	c.Send(packet)
	return c.ReadLine()
}

// ReadLine reads one reply line of the legacy protocol, newline included.
func (c *Conn) ReadLine() string {
	c.t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var sb strings.Builder
	var b [1]byte
	for {
		if _, err := c.Conn.Read(b[:]); err != nil {
			c.t.Fatalf("read line: %v (so far %q)", err, sb.String())
		}
		sb.WriteByte(b[0])
		if b[0] == '\n' {
			return sb.String()
		}
	}
}

// Operands is the payload of a math request.
func Operands(a, b int64) []byte { return calc.AppendOperands(nil, a, b) }

// Ms is the payload of test.sleep.
func Ms(ms uint32) []byte { return binary.BigEndian.AppendUint32(nil, ms) }

// String describes a frame for failure messages.
func String(f wire.Frame) string {
	return fmt.Sprintf("%v id=%d flags=%#x body=%q", f.Type, f.ID, f.Flags, f.Body)
}

// WaitInFlight waits until some client has at least n requests in flight.
func (s *Server) WaitInFlight(t testing.TB, n int64) {
	t.Helper()
	WaitFor(t, 5*time.Second, fmt.Sprintf("%d requests in flight", n), func() bool {
		for _, ci := range s.Clients().Clients {
			if ci.InFlight >= n {
				return true
			}
		}
		return false
	})
}

// ClosedWith reports whether the latest closed client of that name closed
// with that reason.
func (s *Server) ClosedWith(name, reason string) bool {
	for _, ci := range s.Clients().Closed {
		if ci.Name == name {
			return ci.Reason == reason
		}
	}
	return false
}

// Metric returns the value of a counter or gauge of the server's metrics:
// the series whose first label has the value label, or the only series
// when label is "".
func (s *Server) Metric(t testing.TB, name, label string) float64 {
	t.Helper()
	mfs, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if label != "" && (len(m.Label) == 0 || m.Label[0].GetValue() != label) {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}
