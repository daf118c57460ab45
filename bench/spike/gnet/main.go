// Command gnet is the spike of an event-loop core on gnet v2: math.add on
// the native protocol, each loop reading what has arrived, answering every
// complete frame and writing once per wake-up.
package main

import (
	"flag"
	"log"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/nexo-project/nexo/bench/spike/proto"
)

type server struct {
	gnet.BuiltinEventEngine
	ids atomic.Uint64
}

type conn struct {
	p   proto.Conn
	out []byte
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&conn{})
	return nil, gnet.None
}

func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	st := c.Context().(*conn)
	in, _ := c.Peek(-1)
	id := s.ids.Load()
	n, out, bad := st.p.Process(in, st.out[:0], &id)
	if id != s.ids.Load() {
		s.ids.Store(id) // a HELLO: ids need not be dense for a spike
	}
	_, _ = c.Discard(n)
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	st.out = out[:0]
	if bad {
		return gnet.Close
	}
	return gnet.None
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7490", "listen `address`")
	loops := flag.Int("loops", 0, "event loops (0: one per CPU)")
	flag.Parse()
	opts := []gnet.Option{gnet.WithReuseAddr(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay)}
	if *loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(*loops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	log.Fatal(gnet.Run(&server{}, "tcp://"+*addr, opts...))
}
