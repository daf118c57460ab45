package server_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
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

// TestLegacyNativeHello: a native client pointed at the legacy door is
// told at once, in its own protocol, that this is the legacy door. Its
// HELLO used to read as a legacy packet 4 bytes longer than it is, and
// the door waited --legacy-idle (5 minutes) for the rest.
func TestLegacyNativeHello(t *testing.T) {
	srv := Start(t, FastConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	c, err := client.Dial(ctx, srv.Legacy, &client.Options{Name: "lost"})
	if err == nil {
		c.Close()
		t.Fatal("a native client got through the legacy door")
	}
	if !errors.Is(err, wire.CodeBadFrame) || !strings.Contains(err.Error(), "native door") {
		t.Errorf("dial: %v, want BAD_FRAME naming the native door", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the answer took %v", d)
	}
	WaitFor(t, 2*time.Second, "the session closed as a bad frame", func() bool {
		cl := srv.Clients().Closed
		return len(cl) > 0 && cl[0].Door == "legacy" && cl[0].Reason == "bad frame"
	})
}

// TestLegacyPartialPacket: once a packet has begun, the rest must come
// within the handshake timeout; a peer that stops halfway is answered
// ERROR BAD_FRAME and closed, instead of being waited for --legacy-idle.
func TestLegacyPartialPacket(t *testing.T) {
	cfg := FastConfig()
	cfg.HandshakeTimeout = 200 * time.Millisecond
	srv := Start(t, cfg)
	c := Dial(t, srv.Legacy)
	// A whole packet is answered, however long the pause before it.
	if got := c.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2)); got != "3\n" {
		t.Fatalf("whole packet: %q", got)
	}
	time.Sleep(300 * time.Millisecond) // longer than the timeout, between packets: fine
	p := legacy.Append(nil, binary.LittleEndian, "RESTA", 5, 2)
	c.Send(p[:len(p)-2])
	start := time.Now()
	if got := c.ReadLine(); got != "ERROR BAD_FRAME\n" {
		t.Fatalf("partial packet: %q", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v", d)
	}
	c.ExpectClosed()
}

// TestLegacyIdle: a legacy connection silent for --legacy-idle is closed
// as "idle timeout" (legacy clients cannot answer heartbeats).
func TestLegacyIdle(t *testing.T) {
	cfg := FastConfig()
	cfg.Heartbeat = 50 * time.Millisecond
	cfg.LegacyIdleTimeout = 300 * time.Millisecond
	srv := Start(t, cfg)
	c := Dial(t, srv.Legacy)
	if got := c.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2)); got != "3\n" {
		t.Fatalf("SUMA: %q", got)
	}
	start := time.Now()
	c.ExpectClosed()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	WaitFor(t, 2*time.Second, "closed as idle", func() bool {
		cl := srv.Clients().Closed
		return len(cl) > 0 && cl[0].Door == "legacy" && cl[0].Reason == "idle timeout"
	})
}

// TestLegacySlowConsumer: a legacy client that pipelines and never reads
// is closed as a slow consumer, and others are served meanwhile. Its
// receive buffer is small and each answer long (a quotient), so that the
// server's writes stall soon even when the race detector slows it.
func TestLegacySlowConsumer(t *testing.T) {
	srv := Start(t, server.Config{MaxFrame: 64, MaxPending: 1 << 10, WriteTimeout: 300 * time.Millisecond})
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", srv.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	burst := make([]byte, 0, 12*4096)
	for range 4096 {
		burst = legacy.Append(burst, binary.LittleEndian, "DIVISION", 1, 3) // "0.3333333333333333\n"
	}
	for range 2000 {
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(burst); err != nil {
			break // the server closed us, or stopped reading: expected
		}
		if cl := srv.Clients().Closed; len(cl) > 0 && cl[0].Reason == "slow consumer" {
			break
		}
	}
	WaitFor(t, 20*time.Second, "slow consumer closed", func() bool {
		cl := srv.Clients().Closed
		return len(cl) > 0 && cl[0].Door == "legacy" && cl[0].Reason == "slow consumer"
	})
	other := Dial(t, srv.Legacy)
	if got := other.LegacyLine(legacy.Append(nil, binary.LittleEndian, "MULTIPLICACION", 6, 7)); got != "42\n" {
		t.Errorf("another legacy client: %q", got)
	}
}

// TestLegacyNotInline: a legacy command whose method is not inline (math
// served by a worker, say) is answered in order, and while it runs, other
// legacy clients are served: on the event-loop core its connection moves
// to a goroutine of its own rather than hold up the loop and every
// connection on it.
func TestLegacyNotInline(t *testing.T) {
	release := make(chan struct{})
	cfg := FastConfig()
	cfg.Loops = 1 // every connection on the same loop
	srv := StartWith(t, cfg, Options{Catalog: func(*server.Server) (catalog.Options, error) {
		var math []service.Method
		for _, m := range catalog.Services()["math"] {
			if m.Name == "math.mul" {
				m.Inline = false
				inner := m.Handler
				m.Handler = func(ctx context.Context, req service.Request, dst []byte) ([]byte, error) {
					select {
					case <-release:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
					return inner(ctx, req, dst)
				}
			}
			math = append(math, m)
		}
		return catalog.Options{Select: map[string]bool{"sys": true}, Extra: math}, nil
	}})
	slow := Dial(t, srv.Legacy)
	slow.Send(append(legacy.Append(nil, binary.LittleEndian, "MULTIPLICACION", 6, 7), legacy.Append(nil, binary.LittleEndian, "SUMA", 1, 2)...))
	srv.WaitInFlight(t, 1)
	other := Dial(t, srv.Legacy)
	for i := range int16(3) {
		if got := other.LegacyLine(legacy.Append(nil, binary.BigEndian, "SUMA", i, 1)); got != strconv.Itoa(int(i+1))+"\n" {
			t.Fatalf("another client while math.mul runs: %q", got)
		}
	}
	close(release)
	if got := slow.ReadLine() + slow.ReadLine(); got != "42\n3\n" {
		t.Fatalf("the slow client's answers: %q", got)
	}
	// It goes on being served, on its goroutine.
	if got := slow.LegacyLine(legacy.Append(nil, binary.LittleEndian, "MULTIPLICACION", 3, 3)); got != "9\n" {
		t.Fatalf("after: %q", got)
	}
}
