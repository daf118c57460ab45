// Command epoll is the spike of an event-loop core grown from nexo's own
// epoll poller: a few loops, each owning its connections' non-blocking
// sockets in an epoll set (level-triggered), reading what has arrived,
// answering every complete frame of math.add on the native protocol, and
// writing once per wake-up. One thread accepts and deals connections out.
package main

import (
	"flag"
	"log"
	"net/netip"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/nexo-project/nexo/bench/spike/proto"
)

// conn is one connection, touched only by its loop once added. An idle
// connection holds no buffer: reads go to its loop's buffer, and only a
// frame cut in two, or output the socket did not take, is kept here.
type conn struct {
	fd      int
	p       proto.Conn
	rest    []byte // the start of a frame not read whole yet
	pending []byte // output the socket did not take yet
}

// loopBufs are one loop's buffers, shared by its connections.
type loopBufs struct {
	in, out []byte
}

// conns are the connections by descriptor.
var conns [1 << 20]atomic.Pointer[conn]

var ids atomic.Uint64

func main() {
	addr := flag.String("addr", "127.0.0.1:7490", "listen `address`")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops")
	flag.Parse()
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Fatal(err)
	}
	_ = unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		log.Fatal(err)
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		log.Fatal(err)
	}
	epfds := make([]int, *loops)
	for i := range epfds {
		if epfds[i], err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			log.Fatal(err)
		}
		go loop(epfds[i])
	}
	for i := 0; ; i++ {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if err == unix.EINTR || err == unix.ECONNABORTED || err == unix.EMFILE {
				continue
			}
			log.Fatal(err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		conns[fd].Store(&conn{fd: fd})
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if err := unix.EpollCtl(epfds[i%len(epfds)], unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			conns[fd].Store(nil)
			_ = unix.Close(fd)
		}
	}
}

// loop serves the connections of one epoll set.
func loop(epfd int) {
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 256)
	b := &loopBufs{in: make([]byte, 64<<10), out: make([]byte, 0, 64<<10)}
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			log.Fatal(err)
		}
		for _, ev := range events[:n] {
			c := conns[ev.Fd].Load()
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 && !flush(epfd, c) {
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				serve(epfd, c, b)
			}
		}
	}
}

// serve reads what has arrived, answers every complete frame, and writes
// the answers in one call.
func serve(epfd int, c *conn, b *loopBufs) {
	n, err := unix.Read(c.fd, b.in)
	if n <= 0 {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		end(epfd, c)
		return
	}
	in := b.in[:n]
	if len(c.rest) > 0 { // a frame began in an earlier read
		c.rest = append(c.rest, in...)
		in = c.rest
	}
	id := ids.Load()
	used, out, bad := c.p.Process(in, b.out[:0], &id)
	if id != ids.Load() {
		ids.Store(id)
	}
	if left := in[used:]; len(left) == 0 {
		c.rest = nil
	} else if len(c.rest) > 0 {
		c.rest = c.rest[:copy(c.rest, left)]
	} else {
		c.rest = append([]byte(nil), left...)
	}
	if len(out) > 0 {
		if len(c.pending) > 0 {
			c.pending = append(c.pending, out...)
		} else if w, err := unix.Write(c.fd, out); w < len(out) {
			if err != nil && err != unix.EAGAIN {
				end(epfd, c)
				return
			}
			c.pending = append(c.pending[:0], out[max(w, 0):]...)
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(c.fd)}
			_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
		}
	}
	if cap(out) <= 1<<20 {
		b.out = out[:0]
	}
	if bad {
		end(epfd, c)
	}
}

// flush writes pending output; it reports false when the connection ended.
func flush(epfd int, c *conn) bool {
	w, err := unix.Write(c.fd, c.pending)
	if w < 0 {
		if err == unix.EAGAIN {
			return true
		}
		end(epfd, c)
		return false
	}
	c.pending = c.pending[:copy(c.pending, c.pending[w:])]
	if len(c.pending) == 0 {
		c.pending = nil
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}
		_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	}
	return true
}

func end(epfd int, c *conn) {
	_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	conns[c.fd].Store(nil)
	_ = unix.Close(c.fd)
}
