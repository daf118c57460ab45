package server_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/wire"
)

// TestParkIdle: idle native clients give up their reader goroutines once
// they answered a heartbeat, and lose nothing by it: input wakes them
// (also a frame split across the wait), and a kick, a heartbeat timeout,
// a client's close and the final shutdown each end a parked session.
func TestParkIdle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park only on Linux")
	}
	const hb = 60 * time.Millisecond
	const n = 20
	srv := Start(t, server.Config{Heartbeat: hb, Linger: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clients := make([]*client.Client, n)
	for i := range clients {
		c, err := client.Dial(ctx, srv.Native, &client.Options{Name: "idle"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	allParked := func(want int) {
		t.Helper()
		WaitFor(t, 5*time.Second, "idle clients parked", func() bool {
			return srv.Metric(t, "nexo_parked_clients", "") == float64(want) && readers() == 0
		})
	}
	allParked(n)

	// Parked clients are served: each request wakes its connection.
	for round := range 3 {
		for i, c := range clients {
			got, err := c.Add(ctx, int64(i), int64(round))
			if err != nil || got != int64(i+round) {
				t.Fatalf("client %d, round %d: %d, %v", i, round, got, err)
			}
		}
		allParked(n) // again, after the next heartbeat
	}

	// A raw client parks once it answered a PING; a request split in two
	// writes around a wait is read whole.
	raw, _ := Hello(t, srv.Native, "raw")
	pong(t, raw)
	allParked(n + 1)
	req := wire.AppendRequest(nil, 7, "math.mul", Operands(6, 7))
	raw.Send(req[:5])
	time.Sleep(hb / 2)
	raw.Send(req[5:])
	if f := raw.Read(); f.Type != wire.TypeResponse || f.ID != 7 || string(f.Body) != string(word(42)) {
		t.Fatalf("split request: %s", String(f))
	}

	// A parked client that stops answering is closed by the heartbeat
	// check, though no reader is there to notice.
	pong(t, raw)
	allParked(n + 1)
	WaitFor(t, 5*time.Second, "silent parked client closed", func() bool { return srv.ClosedWith("raw", "heartbeat timeout") })
	raw.ExpectClosed()

	// A kicked parked client gets its GOODBYE and the session ends.
	allParked(n)
	if !srv.Kick(clients[0].ID(), "test") {
		t.Fatal("kick: no such client")
	}
	WaitFor(t, 5*time.Second, "kicked client gone", func() bool { _, ok := srv.Client(clients[0].ID()); return !ok })

	// A client closing its side wakes and ends its parked session.
	allParked(n - 1)
	_ = clients[1].Close()
	WaitFor(t, 5*time.Second, "closed client gone", func() bool { _, ok := srv.Client(clients[1].ID()); return !ok })
	allParked(n - 2)
	// The rest stay parked for the shutdown at cleanup, which must drain
	// them without leaving a goroutine behind.
}

// readers counts the server's native reader goroutines.
func readers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "server.(*session).readNative(")
}

// pong answers the next PING (which Conn.Read skips).
func pong(t *testing.T, c *Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := c.Rd.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for a PING: %v", err)
		}
		if f.Type == wire.TypePing {
			c.Send(wire.AppendFrame(nil, wire.TypePong, 0, f.ID, f.Body))
			return
		}
	}
}
