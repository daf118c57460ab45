package faults

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// TestSoak runs a bounded mixed load for NEXO_SOAK (default 3s; CI runs
// 60s): 16 native clients calling random math operations and checking
// every answer, 2 legacy clients, a loop of clients that connect, call
// once and leave, and a loop that injects garbage connections. No error
// appears beyond the injected ones, memory after GC stays flat between the
// first quarter and the end, and goroutines and descriptors return to
// their baseline.
func TestSoak(t *testing.T) {
	d := 3 * time.Second
	if v := os.Getenv("NEXO_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("NEXO_SOAK=%q: %v", v, err)
		}
	}
	cfg := FastConfig()
	cfg.Heartbeat = 500 * time.Millisecond
	cfg.HandshakeTimeout = time.Second
	srv := Start(t, cfg)
	fds := openFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	end, _ := ctx.Deadline()
	// over reports whether the run has ended: an error then is the end's
	// doing (a socket deadline set from ctx can fire a moment before ctx
	// reports it), not a failure.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }

	var ops, churned, injected atomic.Int64
	var wg sync.WaitGroup
	fail := func(format string, args ...any) {
		t.Errorf(format, args...)
		cancel()
	}
	for w := range 16 {
		wg.Go(func() {
			c, err := client.Dial(ctx, srv.Native, &client.Options{Name: "soak"})
			if err != nil {
				fail("dial: %v", err)
				return
			}
			defer c.Close()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for ctx.Err() == nil {
				a, b := int64(r.Int32()), int64(r.Int32N(1000))
				var err error
				var ok bool
				op := r.IntN(5)
				switch op {
				case 0:
					var got int64
					got, err = c.Add(ctx, a, b)
					ok = got == a+b
				case 1:
					var got int64
					got, err = c.Mul(ctx, a, b)
					ok = got == a*b
				case 2:
					var got float64
					if got, err = c.Div(ctx, a, b+1); err == nil {
						ok = got == float64(a)/float64(b+1)
					}
				case 3:
					if _, err = c.Div(ctx, a, 0); errors.Is(err, wire.CodeDivisionByZero) {
						ok, err = true, nil
					}
				case 4:
					var got int64
					got, err = c.Sub(ctx, a, b)
					ok = got == a-b
				}
				if over() {
					return
				}
				if err != nil || !ok {
					fail("client %d: operation %d on %d, %d: wrong answer or error %v", w, op, a, b, err)
					return
				}
				ops.Add(1)
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", srv.Legacy)
			if err != nil {
				fail("legacy dial: %v", err)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for i := int16(0); ctx.Err() == nil; i++ {
				if _, err := conn.Write(legacy.Append(nil, binary.LittleEndian, "SUMA", i, 1)); err != nil {
					fail("legacy write: %v", err)
					return
				}
				line, err := br.ReadString('\n')
				if err != nil || line != strconv.Itoa(int(i)+1)+"\n" {
					fail("legacy SUMA %d 1: %q %v", i, line, err)
					return
				}
				ops.Add(1)
			}
		})
	}
	wg.Go(func() { // churn: connect, call once, leave
		for ctx.Err() == nil {
			c, err := client.Dial(ctx, srv.Native, &client.Options{Name: "churn"})
			if err != nil {
				if !over() {
					fail("churn dial: %v", err)
				}
				return
			}
			if got, err := c.Add(ctx, 1, 2); (err != nil || got != 3) && !over() {
				fail("churn add: %d %v", got, err)
			}
			c.Close()
			churned.Add(1)
		}
	})
	wg.Go(func() { // injected faults: garbage on fresh connections
		r := rand.New(rand.NewPCG(99, 1))
		for ctx.Err() == nil {
			conn, err := net.Dial("tcp", srv.Native)
			if err != nil {
				fail("inject dial: %v", err)
				return
			}
			junk := make([]byte, 1+r.IntN(64))
			for i := range junk {
				junk[i] = byte(r.Uint32())
			}
			_, _ = conn.Write(junk)
			conn.Close()
			injected.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	})

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	time.Sleep(d / 4)
	early := heap()
	wg.Wait()
	late := heap()
	t.Logf("%v: %d operations checked, %d clients churned, %d garbage connections; heap in use %d KiB after the first quarter, %d KiB at the end",
		d, ops.Load(), churned.Load(), injected.Load(), early>>10, late>>10)
	if late > early+early/2+4<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB", early>>10, late>>10)
	}
	WaitFor(t, 10*time.Second, "every session closed", func() bool { return srv.ClientCount() == 0 })
	WaitFor(t, 10*time.Second, "descriptors back to the baseline", func() bool { return openFDs(t) <= fds })
}
