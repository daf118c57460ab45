package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// TestLoopLingerEnds: a drained connection on a loop whose peer never
// closes ends when the linger is over, by the loop's own timer. The
// socket's read deadline says the same, but the runtime may mark it
// passed after the loop's timer has fired; the loop then read nothing,
// set no other timer, and the connection stayed until its peer closed
// (TestMetrics saw a kicked client stay over 2 s). Here the deadline is
// taken away altogether: only the loop's timer can end the connection.
func TestLoopLingerEnds(t *testing.T) {
	s, err := New(Config{Linger: 200 * time.Millisecond, Core: CoreLoop}, service.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeNative(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-served
	})

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // never before the end: the peer does not close
	hello, _ := wire.AppendJSON(nil, wire.TypeHello, wire.Hello{Name: "stays"})
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	f, err := wire.NewReader(c, 0).ReadFrame()
	if err != nil || f.Type != wire.TypeWelcome {
		t.Fatalf("welcome: %v %v", f.Type, err)
	}
	if s.Core() != CoreLoop {
		t.Skip("no event loops here")
	}
	var sess *session
	for _, live := range s.table.appendLive(nil) {
		sess = live
	}
	if !s.Kick(sess.id, "test") {
		t.Fatal("kick refused")
	}
	deadline := time.Now().Add(time.Second)
	for !sess.finished.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the drain did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	_ = sess.conn.SetReadDeadline(time.Time{})
	deadline = time.Now().Add(3 * time.Second)
	for s.table.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection outlived its linger by over 2.8 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := closeReason(sess.reason.Load()); got != reasonKicked {
		t.Errorf("closed as %v, want kicked", got)
	}
}
