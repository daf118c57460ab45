package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// TestMaxConnsPerIP: one address gets at most MaxConnsPerIP connections;
// another address is not affected, and a freed slot can be used again.
func TestMaxConnsPerIP(t *testing.T) {
	srv := Start(t, server.Config{MaxConnsPerIP: 3})
	var held []*Conn
	for range 3 {
		c, _ := Hello(t, srv.Native, "held")
		held = append(held, c)
	}
	over := Dial(t, srv.Native)
	if msg := over.ExpectError(0, wire.CodeBusy); msg != "too many connections from this address" {
		t.Errorf("BUSY message %q", msg)
	}
	over.ExpectClosed()
	// The legacy door shares the count.
	if line := Dial(t, srv.Legacy).ReadLine(); line != "ERROR BUSY\n" {
		t.Errorf("legacy door over the limit: %q", line)
	}
	// Another client machine is not affected.
	DialFrom(t, "127.0.0.2", srv.Native).Hello(wire.Hello{Name: "other machine"})
	held[0].Close()
	WaitFor(t, 5*time.Second, "a slot freed", func() bool { return srv.ClientCount() == 3 })
	Hello(t, srv.Native, "after")
	if st := srv.Stats(); st.Rejected != 2 {
		t.Errorf("rejected %d, want 2", st.Rejected)
	}
}

// TestMaxInFlightTotal: past the server-wide bound, requests are answered
// BUSY whichever connection they come on; below it they are served.
func TestMaxInFlightTotal(t *testing.T) {
	srv := Start(t, server.Config{MaxInFlightTotal: 4})
	a, _ := Hello(t, srv.Native, "a")
	b, _ := Hello(t, srv.Native, "b")
	for i := range uint32(3) {
		a.Send(wire.AppendRequest(nil, i+1, "test.sleep", Ms(400)))
	}
	srv.WaitInFlight(t, 3)
	b.Send(wire.AppendRequest(nil, 1, "test.sleep", Ms(400)))
	b.Send(wire.AppendRequest(nil, 2, "test.sleep", Ms(400)))
	if msg := b.ExpectError(2, wire.CodeBusy); msg != "too many requests in flight on this server" {
		t.Errorf("BUSY message %q", msg)
	}
	// Inline methods are not counted: they run on the reader.
	b.Send(wire.AppendRequest(nil, 3, "math.add", Operands(1, 2)))
	if f := b.Read(); f.Type != wire.TypeResponse || f.ID != 3 {
		t.Fatalf("math.add while busy: %s", String(f))
	}
	var ok []uint32
	for range 4 {
		var f wire.Frame
		if len(ok) < 3 {
			f = a.Read()
		} else {
			f = b.Read()
		}
		if f.Type != wire.TypeResponse {
			t.Fatalf("sleep answered %s", String(f))
		}
		ok = append(ok, f.ID)
	}
	slices.Sort(ok[:3])
	if !slices.Equal(ok, []uint32{1, 2, 3, 1}) {
		t.Errorf("answered ids %v", ok)
	}
}

// TestTokens: with client tokens configured, HELLO must carry one of them
// or the admin token; failures are answered UNAUTHORIZED, counted, and
// after AuthFailures of them the address is refused for the window, even
// with a good token. Other addresses are not affected.
func TestTokens(t *testing.T) {
	srv := Start(t, server.Config{Tokens: []string{"alpha", "beta"}, AdminToken: "root", AuthFailures: 3})
	for _, tc := range []struct {
		token string
		admin bool
	}{{"alpha", false}, {"beta", false}, {"root", true}} {
		c := Dial(t, srv.Native)
		c.Hello(wire.Hello{Name: "tok", Token: tc.token})
		c.Send(wire.AppendRequest(nil, 1, "sys.clients", nil))
		f := c.Read()
		if got := f.Type == wire.TypeResponse; got != tc.admin {
			t.Errorf("token %q: sys.clients answered %s; admin want %v", tc.token, String(f), tc.admin)
		}
	}
	for _, bad := range []string{"", "alph", "alpha "} {
		c := Dial(t, srv.Native)
		c.SendHello(wire.Hello{Token: bad})
		if msg := c.ExpectError(0, wire.CodeUnauthorized); msg != "invalid or missing token" {
			t.Errorf("token %q: %q", bad, msg)
		}
		c.ExpectClosed()
	}
	// Three failures: 127.0.0.1 is over its limit. Its tokens are checked
	// once a second: a good one gets in, and an attempt right after it is
	// refused without a look.
	Dial(t, srv.Native).Hello(wire.Hello{Token: "alpha"})
	c := Dial(t, srv.Native)
	c.SendHello(wire.Hello{Token: "alpha"})
	if msg := c.ExpectError(0, wire.CodeUnauthorized); msg != "too many failed authentications from this address" {
		t.Errorf("an attempt within the second: %q", msg)
	}
	DialFrom(t, "127.0.0.2", srv.Native).Hello(wire.Hello{Token: "alpha"})
	if n := srv.Metric(t, "nexo_auth_failures_total", server.DoorNative); n != 4 {
		t.Errorf("nexo_auth_failures_total{door=native} = %v, want 4", n)
	}
}

// TestAuthBlocked: over its failure limit, an address's tokens are
// checked once a second on every door together: a good token gets in, and
// an attempt on another door right after it is refused without a look
// (the rule's timing is TestAuthFailureRule's, on an injected clock).
func TestAuthBlocked(t *testing.T) {
	srv := Start(t, server.Config{Tokens: []string{"alpha"}, AuthFailures: 1, AuthWindow: time.Hour})
	c := Dial(t, srv.Native)
	c.SendHello(wire.Hello{Token: "wrong"})
	c.ExpectError(0, wire.CodeUnauthorized)
	Dial(t, srv.Native).Hello(wire.Hello{Token: "alpha"}) // checked: it gets in
	resp, err := http.Get("http://" + srv.Web + "/ws?token=alpha")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("/ws with the right token from a blocked address: %d, want 429", resp.StatusCode)
	}
}

// TestLegacyAllow: the legacy door closes connections from networks not
// on its list at once, without a word, and serves the others.
func TestLegacyAllow(t *testing.T) {
	srv := Start(t, server.Config{LegacyAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	c := Dial(t, srv.Legacy)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Conn.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Fatalf("not allowed: read %d bytes, %v; want the connection closed", n, err)
	}
	ok := DialFrom(t, "127.0.0.2", srv.Legacy)
	if line := ok.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 2, 3)); line != "5\n" {
		t.Errorf("allowed network: %q", line)
	}
	// The native door is not restricted.
	Hello(t, srv.Native, "native")
}

func isReset(err error) bool {
	ne, ok := err.(*net.OpError)
	return ok && !ne.Timeout()
}

// TestSlowloris: a peer dribbling a frame cannot hold a connection past its
// read deadline: the handshake timeout before HELLO, the heartbeat bound
// after it (a half-sent frame is not a sign of life).
func TestSlowloris(t *testing.T) {
	hb := 200 * time.Millisecond
	srv := Start(t, server.Config{HandshakeTimeout: 300 * time.Millisecond, Heartbeat: hb})
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "dribbler"})
	req := wire.AppendRequest(nil, 1, "math.add", Operands(1, 2))
	for _, tc := range []struct {
		name   string
		before []byte // sent at once
		drip   []byte // sent a byte every 50 ms
		bound  time.Duration
	}{
		{"HELLO", nil, hello, 300 * time.Millisecond},
		{"REQUEST", hello, req, 2*hb + hb/2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Dial(t, srv.Native)
			c.Send(tc.before)
			start := time.Now()
			var closed atomic.Bool
			go func() {
				for _, b := range tc.drip {
					if _, err := c.Write([]byte{b}); err != nil {
						closed.Store(true)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			// Read until the server closes; the WELCOME and PINGs may come first.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c.Conn)
			took := time.Since(start)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept the dribbling connection open")
			}
			// The check runs every quarter heartbeat: allow that and scheduling.
			if took > tc.bound+hb {
				t.Errorf("closed after %v; bound %v", took, tc.bound)
			}
			if len(tc.drip)*50 < int(took.Milliseconds()) {
				t.Errorf("the whole frame was sent before the close (%v)", took)
			}
		})
	}
	WaitFor(t, 5*time.Second, "the dribbler listed as timed out", func() bool {
		for _, ci := range srv.Clients().Closed {
			if ci.Name == "dribbler" {
				return ci.Reason == "heartbeat timeout"
			}
		}
		return false
	})
}

// TestSlowConsumerAmongMany: 50 clients in a closed loop, first alone, then
// beside a client that pipelines big requests and never reads. The
// non-reader is closed as a slow consumer, the others keep their
// throughput (a loose bound here: timing under -race on 2 shared cores is
// noisy; docs/reliability.md has the measured numbers) and lose nothing.
func TestSlowConsumerAmongMany(t *testing.T) {
	srv := Start(t, server.Config{MaxFrame: 1 << 16, MaxPending: 1 << 18, WriteTimeout: time.Second})
	const n = 50
	clients := make([]*client.Client, n)
	for i := range clients {
		c, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "normal"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	run := func(d time.Duration) (ops int64, p99 time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		var total atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(d)
		for i, c := range clients {
			wg.Go(func() {
				var mine []time.Duration
				for k := int64(0); time.Now().Before(stop); k++ {
					start := time.Now()
					got, err := c.Add(context.Background(), int64(i), k)
					if err != nil || got != int64(i)+k {
						t.Errorf("client %d: add = %d, %v", i, got, err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				total.Add(int64(len(mine)))
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(lat)
		return total.Load(), lat[len(lat)*99/100]
	}
	baseOps, baseP99 := run(time.Second)

	bad, _ := Hello(t, srv.Native, "never-reads")
	payload := make([]byte, 60000)
	go func() {
		var burst []byte
		for i := range 5000 {
			burst = wire.AppendRequest(burst[:0], uint32(i+1), "sys.echo", payload)
			_ = bad.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if _, err := bad.Write(burst); err != nil {
				return // closed by the server, as it should be
			}
		}
	}()
	ops, p99 := run(time.Second)
	t.Logf("50 clients alone: %d ops/s, p99 %v; beside a non-reader: %d ops/s, p99 %v", baseOps, baseP99, ops, p99)
	if ops < baseOps/2 {
		t.Errorf("throughput fell from %d to %d ops/s beside a non-reader", baseOps, ops)
	}
	WaitFor(t, 10*time.Second, "the non-reader closed as a slow consumer", func() bool {
		for _, ci := range srv.Clients().Closed {
			if ci.Name == "never-reads" {
				return ci.Reason == "slow consumer"
			}
		}
		return false
	})
}

// TestHelloLimit: before HELLO is accepted the frame limit is
// MaxHelloFrame, whatever the max frame: a peer cannot make the server
// allocate a max-frame buffer without authenticating. After HELLO the
// configured max frame applies.
func TestHelloLimit(t *testing.T) {
	srv := Start(t, server.Config{MaxFrame: 1 << 20})
	c := Dial(t, srv.Native)
	c.Send(wire.AppendFrame(nil, wire.TypeHello, 0, 0, make([]byte, server.MaxHelloFrame)))
	c.ExpectError(0, wire.CodeFrameTooLarge)
	c.ExpectClosed()
	ok, _ := Hello(t, srv.Native, "big echo")
	payload := make([]byte, 64<<10)
	ok.Send(wire.AppendRequest(nil, 1, "sys.echo", payload))
	if f := ok.Read(); f.Type != wire.TypeResponse || len(f.Body) != len(payload) {
		t.Fatalf("64 KiB echo after HELLO: %v %d bytes", f.Type, len(f.Body))
	}
}

// TestAnswerTooLarge: an answer longer than the max frame the client was
// told is not sent: the client gets INTERNAL for that request, and the
// connection goes on.
func TestAnswerTooLarge(t *testing.T) {
	cfg := FastConfig()
	cfg.MaxFrame = 4096
	big := func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
		return append(dst, make([]byte, 5000)...), nil
	}
	srv := StartWith(t, cfg, Options{Catalog: func(*server.Server) (catalog.Options, error) {
		return catalog.Options{Select: map[string]bool{}, Extra: []service.Method{
			{Name: "test.big", Inline: true, Handler: big},
			{Name: "test.bigslow", Handler: big},
			{Name: "test.fits", Inline: true, Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
				return append(dst, make([]byte, 4096-8)...), nil // length field exactly the max frame
			}},
		}}, nil
	}})
	c, _ := Hello(t, srv.Native, "big")
	for id, method := range map[uint32]string{1: "test.big", 2: "test.bigslow"} {
		c.Send(wire.AppendRequest(nil, id, method, nil))
		if got := c.ExpectError(id, wire.CodeInternal); got == "" {
			t.Errorf("%s: no message", method)
		}
	}
	c.Send(wire.AppendRequest(nil, 3, "test.fits", nil))
	if f := c.Read(); f.Type != wire.TypeResponse || len(f.Body) != 4096-8 {
		t.Fatalf("an answer of exactly the max frame: %s", String(f))
	}
}

// holdMethod is "test.hold": it keeps its request in flight until its
// context ends or the test releases it, whatever its payload.
func holdMethod(release <-chan struct{}) service.Method {
	return service.Method{Name: "test.hold", Handler: func(ctx context.Context, _ service.Request, dst []byte) ([]byte, error) {
		select {
		case <-release:
			return append(dst, "held"...), nil
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}}
}

// TestMaxInFlightBytes: the requests one connection has running beside
// its reader may hold at most MaxInFlightBytes of payload; past it they
// are answered BUSY, though one request is always let through alone. Each
// 60 KB request used to be copied and held, up to MaxInFlight of them.
func TestMaxInFlightBytes(t *testing.T) {
	cfg := FastConfig()
	cfg.MaxInFlightBytes = 100 << 10
	release := make(chan struct{})
	srv := StartWith(t, cfg, Options{Catalog: func(*server.Server) (catalog.Options, error) {
		return catalog.Options{Extra: []service.Method{holdMethod(release)}}, nil
	}})
	c, _ := Hello(t, srv.Native, "big")
	big := make([]byte, 60<<10)
	c.Send(wire.AppendRequest(nil, 1, "test.hold", big))
	srv.WaitInFlight(t, 1)
	c.Send(wire.AppendRequest(nil, 2, "test.hold", big))
	if msg := c.ExpectError(2, wire.CodeBusy); msg != "too many bytes in flight on this connection" {
		t.Errorf("BUSY message %q", msg)
	}
	c.Send(wire.AppendRequest(nil, 3, "test.hold", big[:30<<10])) // fits beside the first
	srv.WaitInFlight(t, 2)
	close(release)
	for range 2 {
		if f := c.Read(); f.Type != wire.TypeResponse || (f.ID != 1 && f.ID != 3) {
			t.Fatalf("held request answered %s", String(f))
		}
	}
	// Freed: a request bigger than the limit still runs when alone.
	c.Send(wire.AppendRequest(nil, 4, "test.hold", make([]byte, 200<<10)))
	if f := c.Read(); f.Type != wire.TypeResponse || f.ID != 4 {
		t.Fatalf("a lone big request: %s", String(f))
	}
}

// TestClaimedLengthsReserveNothing: 300 connections whose frame headers
// claim 1 MiB each, with 32 bytes sent, add at most 32 MiB of heap: a
// frame's buffer grows with the bytes that arrive. Each used to reserve
// the claimed length at once, about 300 MB held until the heartbeat.
func TestClaimedLengthsReserveNothing(t *testing.T) {
	srv := Start(t, FastConfig())
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	claim := wire.AppendRequest(nil, 1, "sys.echo", make([]byte, 1<<20-20))[:32]
	for range 300 {
		c, _ := Hello(t, srv.Native, "claimer")
		c.Send(claim)
	}
	// The server reads the 32 bytes at once; nothing here can tell when
	// it has, so give it a moment (it only makes a failure likelier).
	time.Sleep(300 * time.Millisecond)
	if grew := int64(heap()) - int64(base); grew > 32<<20 {
		t.Errorf("heap grew %d MiB for 300 claims of 1 MiB", grew>>20)
	}
}

// TestMaxConnsEveryDoor: the web listener counts against MaxConns like the
// binary doors: idle keep-alive HTTP connections fill it (they used to be
// free), and an HTTP connection over it gets 503 and a close. The admin
// listener has a limit of its own, so that clients cannot starve probes.
func TestMaxConnsEveryDoor(t *testing.T) {
	srv := Start(t, server.Config{MaxConns: 2})
	for _, addr := range []string{srv.Web, srv.Web} {
		c := Dial(t, addr)
		c.Send([]byte("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
		if line := c.ReadLine(); !strings.HasPrefix(line, "HTTP/1.1 ") {
			t.Fatalf("%s: %q", addr, line)
		}
	}
	over := Dial(t, srv.Native)
	over.ExpectError(0, wire.CodeBusy)
	over.ExpectClosed()
	overWeb := Dial(t, srv.Web)
	if line := overWeb.ReadLine(); line != "HTTP/1.1 503 Service Unavailable\r\n" {
		t.Errorf("web door over the limit: %q", line)
	}
	probe := Dial(t, srv.Admin)
	probe.Send([]byte("GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	if line := probe.ReadLine(); line != "HTTP/1.1 200 OK\r\n" {
		t.Errorf("the admin listener with the clients' limit full: %q", line)
	}
}

// TestRefusalsNeverSilent: a burst of connections over MaxConns is
// answered BUSY, every one, and each is closed soon after; they used to
// be closed without a word past 64 at once.
func TestRefusalsNeverSilent(t *testing.T) {
	srv := Start(t, server.Config{MaxConns: 1})
	hold, _ := Hello(t, srv.Native, "holder")
	defer hold.Close()
	const n = 200
	var wg sync.WaitGroup
	var busy, slow atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", srv.Native)
			if err != nil {
				return
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			if e, err := wire.NewReader(bytes.NewReader(b), 0).ReadFrame(); err == nil && e.Type == wire.TypeError {
				if pe, err := wire.ParseError(e.Body); err == nil && pe.Code == wire.CodeBusy {
					busy.Add(1)
				}
			}
			if time.Since(start) > time.Second {
				slow.Add(1)
			}
		}()
	}
	wg.Wait()
	if busy.Load() != n {
		t.Errorf("%d of %d refused connections got BUSY", busy.Load(), n)
	}
	if slow.Load() > 0 {
		t.Errorf("%d refused connections were closed after more than a second", slow.Load())
	}
	if r := srv.Stats().Rejected; r != n {
		t.Errorf("%d rejections counted, want %d", r, n)
	}
}
