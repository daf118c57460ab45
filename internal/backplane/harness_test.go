package backplane

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/natsembed"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/sys"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The test binary plays a worker process when this variable names a NATS
// URL, so that a test can kill -9 a real worker.
const childEnv = "NEXO_BACKPLANE_WORKER"

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		runChildWorker(url)
		return
	}
	os.Exit(m.Run())
}

// runChildWorker serves the test methods until it is killed.
func runChildWorker(url string) {
	var once sync.Once
	onSlowAdd = func() { once.Do(func() { fmt.Println("busy") }) }
	nc, err := Connect(ConnectOptions{URL: url, Name: "child worker"})
	if err == nil {
		err = WaitConnected(context.Background(), nc)
	}
	if err == nil {
		_, err = NewWorker(nc, workerRegistry(nil), WorkerOptions{Version: "0.0.1"})
	}
	if err == nil {
		err = nc.Flush() // the subscriptions are in place before "ready"
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

// onSlowAdd, when set, runs as each test.slowadd starts: a child worker
// says "busy" the first time, so that a test can kill it with requests in
// hand.
var onSlowAdd func()

// slowAdd is "test.slowadd": math.add after 20 ms, on its own goroutine,
// idempotent, so that a worker killed under load has requests in hand.
func slowAdd() service.Method {
	add := calc.Methods()[0].Handler
	return service.Method{
		Name: "test.slowadd", Idempotent: true,
		Handler: func(ctx context.Context, req service.Request, dst []byte) ([]byte, error) {
			if onSlowAdd != nil {
				onSlowAdd()
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return dst, ctx.Err()
			}
			return add(ctx, req, dst)
		},
	}
}

// testServices are the services workers run in these tests and gateways
// forward.
func testServices() []service.Method {
	// The services nexo ships first, then the test methods.
	return append(append(calc.Methods(), sys.Methods()...), nexotest.SleepMethod(), slowAdd())
}

func workerRegistry(extra []service.Method) *service.Registry {
	reg := service.NewRegistry()
	if err := reg.Register(append(testServices(), extra...)...); err != nil {
		panic(err)
	}
	return reg
}

// startNATS runs a NATS server on addr ("127.0.0.1:0" for any port).
func startNATS(t testing.TB, addr string) *natsembed.Server {
	t.Helper()
	ns, err := natsembed.Start(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	return ns
}

// dialNATS connects as a gateway or worker does, and waits until connected.
func dialNATS(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnectOptions{URL: url, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

// startWorker runs an in-process worker with the test services plus extra.
func startWorker(t testing.TB, url string, extra ...service.Method) *Worker {
	t.Helper()
	nc := dialNATS(t, url)
	w, err := NewWorker(nc, workerRegistry(extra), WorkerOptions{Version: "0.0.1", Metadata: map[string]string{"services": "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Stop(ctx) // a test may have stopped it already
	})
	return w
}

// gateway is a nexo server that serves nothing itself: every service is
// forwarded over NATS.
type gateway struct {
	*nexotest.Server
	gw *Gateway
}

func startGateway(t testing.TB, url, name string, retryAfter time.Duration) *gateway {
	t.Helper()
	return startGatewayWith(t, url, name, retryAfter, nexotest.FastConfig())
}

// startGatewayWith is startGateway with the server's configuration.
func startGatewayWith(t testing.TB, url, name string, retryAfter time.Duration, cfg server.Config) *gateway {
	t.Helper()
	nc := dialNATS(t, url)
	g := &gateway{}
	g.Server = nexotest.StartWith(t, cfg, nexotest.Options{
		Catalog: func(srv *server.Server) (catalog.Options, error) {
			var err error
			g.gw, err = NewGateway(nc, srv, GatewayOptions{Name: name, Version: "0.0.1", RetryAfter: retryAfter, Tracer: cfg.Tracer})
			if err != nil {
				return catalog.Options{}, err
			}
			// Nothing served here: the services nexo ships are stubs, the
			// test methods too, and anything else goes to the fallback.
			var extra []service.Method
			for _, m := range testServices()[len(calc.Methods())+len(sys.Methods()):] {
				extra = append(extra, g.gw.Stub(m))
			}
			return catalog.Options{Select: map[string]bool{}, Gateway: g.gw, Extra: extra,
				Cluster: func(ctx context.Context) (any, error) { return g.gw.Cluster(ctx) }}, nil
		},
		Cluster:    func(ctx context.Context) (any, error) { return g.gw.Cluster(ctx) },
		Collectors: func() []prometheus.Collector { return []prometheus.Collector{g.gw.Collector()} },
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.gw.Close)
	return g
}

// childWorker is a worker process. busy is closed once it has begun
// serving a test.slowadd.
type childWorker struct {
	*exec.Cmd
	busy chan struct{}
}

// startChildWorker runs a worker process; it is killed when the test ends.
func startChildWorker(t testing.TB, url string) childWorker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // killed already by some tests
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(out)
	ready := make(chan bool, 1)
	busy := make(chan struct{})
	go func() {
		ready <- lines.Scan() && lines.Text() == "ready"
		if lines.Scan() && lines.Text() == "busy" {
			close(busy)
		}
		_, _ = io.Copy(io.Discard, out) // until the process ends
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("child worker did not say ready: %v", lines.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child worker did not start")
	}
	return childWorker{Cmd: cmd, busy: busy}
}

// op is one math request and its expected answer.
type op struct {
	method string
	a, b   int64
	want   int64
	code   wire.Code // expected error, or 0
}

// randomOp returns a math request whose answer is known.
func randomOp(r *rand.Rand) op {
	a, b := r.Int64N(1<<40)-1<<39, r.Int64N(1<<20)-1<<19
	switch r.IntN(5) {
	case 0:
		return op{"math.add", a, b, a + b, 0}
	case 1:
		return op{"math.sub", a, b, a - b, 0}
	case 2:
		return op{"math.mul", a, b, a * b, 0}
	case 3:
		if b == 0 {
			return op{"math.div", a, 0, 0, wire.CodeDivisionByZero}
		}
		return op{"math.add", 1<<62 + a, 1<<62 + 1<<39, 0, wire.CodeOverflow}
	}
	return op{"math.div", a, 0, 0, wire.CodeDivisionByZero}
}

// pipeline sends rounds of depth pipelined requests made by next on c and
// checks that each request gets exactly one right answer. It returns the
// number of requests answered; errors are returned, not fatal, so that it
// can run on any goroutine.
func pipeline(c *nexotest.Conn, rounds, depth int, next func() op, stop *atomic.Bool) (int, error) {
	n := 0
	var id uint32
	var b []byte
	for round := 0; round < rounds && (stop == nil || !stop.Load()); round++ {
		ops := make(map[uint32]op, depth)
		b = b[:0]
		for range depth {
			id++
			o := next()
			ops[id] = o
			b = wire.AppendRequestDeadline(b, id, 10000, o.method, calc.AppendOperands(nil, o.a, o.b))
		}
		if _, err := c.Write(b); err != nil {
			return n, err
		}
		for range depth {
			f, err := c.ReadErr()
			if err != nil {
				return n, err
			}
			o, ok := ops[f.ID]
			if !ok {
				return n, fmt.Errorf("answer to id %d, which was not asked or was answered already: %s", f.ID, nexotest.String(f))
			}
			delete(ops, f.ID)
			if err := check(f, o); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// check compares an answer with the expected one.
func check(f wire.Frame, o op) error {
	switch {
	case o.code == 0 && f.Type == wire.TypeResponse && len(f.Body) == 8 && int64(binary.BigEndian.Uint64(f.Body)) == o.want:
		return nil
	case o.code != 0 && f.Type == wire.TypeError:
		if e, err := wire.ParseError(f.Body); err == nil && e.Code == o.code {
			return nil
		}
	}
	return fmt.Errorf("%s(%d, %d): got %s, want %d (error %v)", o.method, o.a, o.b, nexotest.String(f), o.want, o.code)
}

// roundTrip sends one request and returns the answer frame.
func roundTrip(t testing.TB, c *nexotest.Conn, id uint32, deadlineMS uint32, method string, payload []byte) wire.Frame {
	t.Helper()
	c.Send(wire.AppendRequestDeadline(nil, id, deadlineMS, method, payload))
	f := c.Read()
	if f.ID != id {
		t.Fatalf("answer to %d, want %d: %s", f.ID, id, nexotest.String(f))
	}
	return f
}

// errorCode returns the code of an ERROR frame, or 0.
func errorCode(f wire.Frame) wire.Code {
	if f.Type != wire.TypeError {
		return 0
	}
	e, err := wire.ParseError(f.Body)
	if err != nil {
		return 0
	}
	return e.Code
}

// silence checks that nothing but PINGs arrives on c for d.
func silence(c *nexotest.Conn, d time.Duration) error {
	end := time.Now().Add(d)
	defer c.SetReadDeadline(time.Time{})
	for {
		if err := c.SetReadDeadline(end); err != nil {
			return err
		}
		f, err := c.Rd.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Type != wire.TypePing {
			return fmt.Errorf("unexpected frame after the last answer: %s", nexotest.String(f))
		}
	}
}
