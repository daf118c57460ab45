package client_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/service"
)

// ledger is a non-idempotent method, test.record: it records each call's
// 8-byte key, so the test can see what ran and how often.
type ledger struct {
	mu   sync.Mutex
	runs map[uint64]int
}

func (l *ledger) method() service.Method {
	return service.Method{Name: "test.record", Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
		l.mu.Lock()
		l.runs[binary.BigEndian.Uint64(req.Payload)]++
		l.mu.Unlock()
		return dst, nil
	}}
}

// startAt runs a server with math and test.record on addr ("127.0.0.1:0"
// for any port) and returns it with its address.
func startAt(t *testing.T, addr string, l *ledger) (*server.Server, string) {
	t.Helper()
	reg := service.NewRegistry()
	srv, err := server.New(server.Config{Heartbeat: 200 * time.Millisecond, Linger: 100 * time.Millisecond}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(reg.Register(calc.Methods()...), reg.Register(l.method())); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for range 50 { // the old server's port may take a moment to be free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeNative(ln) }()
	return srv, ln.Addr().String()
}

func stop(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// TestReconnectAcrossRestart: the server is stopped, once draining and
// once at once (calls in flight lost), and started again on the same
// address each time, while 8 goroutines call math.add and
// test.record through one Reconnecting client. Every math.add succeeds
// with the right sum (retried where needed); every test.record either
// succeeded, and ran exactly once, or returned an error, and ran at most
// once: nothing is lost silently and nothing runs twice.
func TestReconnectAcrossRestart(t *testing.T) {
	l := &ledger{runs: map[uint64]int{}}
	srv, addr := startAt(t, "127.0.0.1:0", l)
	r, err := client.DialReconnecting(context.Background(), addr, &client.Options{Name: "survivor"},
		&client.ReconnectOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var adds atomic.Int64
	var mu sync.Mutex
	recorded := map[uint64]bool{} // key -> the call returned success
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := int64(0); ctx.Err() == nil; k++ {
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := r.Add(cctx, int64(w), k)
				if err != nil || got != int64(w)+k {
					t.Errorf("worker %d: add(%d, %d) = %d, %v", w, w, k, got, err)
					ccancel()
					return
				}
				adds.Add(1)
				key := uint64(w)<<32 | uint64(k)
				_, err = r.Call(cctx, "test.record", binary.BigEndian.AppendUint64(nil, key))
				ccancel()
				mu.Lock()
				recorded[key] = err == nil
				mu.Unlock()
				if err != nil && !errors.Is(err, client.ErrClosed) && !errors.Is(err, client.ErrServerDead) {
					t.Errorf("test.record: unexpected error %v", err)
				}
			}
		})
	}
	flowing := func() {
		before := adds.Load()
		nexotest.WaitFor(t, 10*time.Second, "calls flowing", func() bool { return adds.Load() > before+1000 })
	}
	flowing()
	stop(t, srv) // graceful: GOODBYE, in-flight calls answered, new ones SHUTTING_DOWN
	time.Sleep(200 * time.Millisecond)
	srv2, _ := startAt(t, addr, l)
	flowing()
	hard, hardCancel := context.WithCancel(context.Background())
	hardCancel()
	_ = srv2.Shutdown(hard) // hard: every connection closed at once, calls in flight lost
	time.Sleep(200 * time.Millisecond)
	srv3, _ := startAt(t, addr, l)
	defer stop(t, srv3)
	flowing()
	cancel()
	wg.Wait()

	if r.Reconnects() < 2 {
		t.Errorf("reconnects = %d", r.Reconnects())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var failed int
	for key, ok := range recorded {
		switch runs := l.runs[key]; {
		case ok && runs != 1:
			t.Errorf("test.record %x succeeded but ran %d times", key, runs)
		case !ok && runs > 1:
			t.Errorf("test.record %x failed and ran %d times", key, runs)
		case !ok:
			failed++
		}
	}
	for key, runs := range l.runs {
		if _, ok := recorded[key]; !ok || runs > 1 {
			t.Errorf("test.record %x ran %d times, seen by the caller: %v", key, runs, ok)
		}
	}
	t.Logf("%d adds, %d records (%d returned an error), %d reconnects, %d retries",
		adds.Load(), len(recorded), failed, r.Reconnects(), r.Retries())
}
