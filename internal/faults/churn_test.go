package faults

import (
	"context"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// TestVanishingConnections: 1,000 connections that reset, go half-open
// (HELLO, then silence), close in the middle of a frame, or close in the
// middle of HELLO. A canary client's answers stay right throughout, every
// such session is closed, and this process's descriptors and the server's
// goroutines return to their baseline (Start checks the goroutines).
func TestVanishingConnections(t *testing.T) {
	cfg := FastConfig()
	cfg.Heartbeat = hb
	cfg.HandshakeTimeout = 500 * time.Millisecond
	srv := Start(t, cfg)
	fds := openFDs(t)
	canary, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	canaryDone := make(chan error, 1)
	go func() {
		var n int64
		for {
			select {
			case <-stop:
				canaryDone <- nil
				return
			default:
			}
			if got, err := canary.Add(context.Background(), n, 1); err != nil || got != n+1 {
				canaryDone <- err
				return
			}
			n++
		}
	}()

	req := wire.AppendRequest(nil, 1, "math.add", Operands(1, 2))
	modes := []struct {
		name string
		do   func(c *net.TCPConn)
	}{
		{"reset", func(c *net.TCPConn) {
			_, _ = c.Write(hello("reset"))
			_ = c.SetLinger(0) // close sends RST
		}},
		{"half-open", func(c *net.TCPConn) {
			_, _ = c.Write(hello("half-open"))
			time.Sleep(4 * hb) // silent; the server's heartbeat closes it
		}},
		{"mid-frame", func(c *net.TCPConn) {
			_, _ = c.Write(append(hello("mid-frame"), req[:len(req)/2]...))
		}},
		{"mid-hello", func(c *net.TCPConn) {
			h := hello("mid-hello")
			_, _ = c.Write(h[:len(h)/2])
		}},
	}
	const total = 1000
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range total {
		m := modes[i%len(modes)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", srv.Native, 5*time.Second)
			if err != nil {
				t.Errorf("%s %d: %v", m.name, i, err)
				return
			}
			m.do(c.(*net.TCPConn))
			_ = c.Close()
		})
	}
	wg.Wait()
	close(stop)
	if err := <-canaryDone; err != nil {
		t.Fatalf("canary: %v", err)
	}
	canary.Close()
	WaitFor(t, 10*time.Second, "every session closed", func() bool { return srv.ClientCount() == 0 })
	WaitFor(t, 10*time.Second, "descriptors back to the baseline", func() bool { return openFDs(t) <= fds })
	st := srv.Stats()
	t.Logf("closed sessions by reason: %v", st.Closed)
	if st.Accepted < total {
		t.Errorf("accepted %d, want at least %d", st.Accepted, total)
	}
}

// TestKilledClient: a client process killed with kill -9 while 64 of its
// requests are in flight is closed at once (the kernel resets or closes
// its socket), and the server keeps serving others.
func TestKilledClient(t *testing.T) {
	srv := Start(t, FastConfig())
	other, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p := startChild(t, "pipeline", srv.Native)
	id, _ := strconv.ParseUint(p.ready, 10, 64)
	if ci, ok := srv.Client(id); !ok || ci.Requests == 0 {
		t.Fatalf("the child is not working: %+v %v", ci, ok)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var reason string
	WaitFor(t, 5*time.Second, "the killed client closed", func() bool {
		for _, ci := range srv.Clients().Closed {
			if ci.ID == id {
				reason = ci.Reason
				return true
			}
		}
		return false
	})
	if reason != "client closed" && reason != "read error" && reason != "write error" {
		t.Errorf("closed as %q", reason)
	}
	if got, err := other.Add(context.Background(), 40, 2); err != nil || got != 42 {
		t.Errorf("other client: %d %v", got, err)
	}
}
