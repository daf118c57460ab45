package server

import (
	"container/heap"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/wire"
)

// The event-loop core (Config.Core "loop", the default on Linux): a few
// loops, one per core, each owning the plain-TCP native connections dealt
// to it after their handshake. A loop waits on its epoll set
// (level-triggered), and for each connection with input it reads once
// into the connection's frame reader, hands every whole frame to the
// session core (inline methods run right there), and writes the answers
// once, without ever waiting: what the socket does not take goes to a
// goroutine of the connection's writer, and the loop stops reading the
// connection until that goroutine is done (back-pressure, with the slow
// consumer bounds of the goroutine path). Requests that are not inline
// run on goroutines, as on the goroutine path, and write their answers
// from there. The loop's timer heap ends the linger of closing
// connections; heartbeats come from the server's one heartbeat timer.
// See docs/architecture.md.

// loops are the event loops of a server.
type loops struct {
	all  []*loop
	next atomic.Uint32
}

// loop is one event loop: an epoll set and the goroutine that waits on it.
type loop struct {
	srv *Server
	set *epollSet // its eventfd: posted connections, or close

	mu     sync.Mutex
	posted []*loopConn // guarded by mu: connections to look at
	closed bool        // guarded by mu

	// owned by the loop's goroutine
	conns  map[uint64]*loopConn
	buf    []byte // what a connection read, on its way to the connection's reader
	events []unix.EpollEvent
	timers timerHeap
	held   atomic.Int64 // connections in the loop (read by metrics)
	// requests of the loop's connections served on other goroutines
	// (session.loopWork), which then answer them: while there are any,
	// the loop waits in the runtime's poller (run)
	elsewhere   atomic.Int64
	watchFailed bool // the runtime's poller could not watch the set, logged once
	done        chan struct{}
}

// loopConn is a connection served by a loop: its session, its door's
// reader, and what the loop keeps of it, touched by the loop's goroutine
// only (posted excepted). It is also what its door's reader reads from
// (Read, Lend): the socket without waiting, once per wake-up, into the
// loop's buffer; then wire.ErrWouldBlock until the loop reads it again.
type loopConn struct {
	l       *loop
	id      uint64   // the session's id, its key in the loop (set before the session exists during a handshake)
	s       *session // nil until the handshake is done (hs)
	hs      *handshake
	door    loopDoor
	fc      *fdConn
	rd      *wire.Reader // the native door's frame reader, which reads in the loop's buffer (Lend)
	conn    net.Conn     // set once the connection left its loop: plain blocking reads
	rest    []byte       // read and not handed to the reader yet (within one wake-up)
	partial int64        // unix ns when the message under way began to arrive (legacy); 0: none
	resume  func()       // posts the connection back: the writer is done
	mayRead bool         // in a wake-up, and not read yet
	added   bool         // in the loop's set and map
	blocked bool         // the writer's goroutine has output to write: not read until resume
	linger  bool         // the linger timer is set
	posted  atomic.Bool  // in the loop's posted list
}

// loopDoor is a door's part of a connection on a loop.
type loopDoor interface {
	// step hands the session core the next whole message its reader
	// holds, reading once per wake-up when it holds none, and ends the
	// handling of the message with session.frameDone(true): the loop
	// ends the burst (burstDone) once the wake-up's input is used up. It
	// returns
	// wire.ErrWouldBlock when no whole message is left, errHandoff when
	// the connection must go on on a goroutine (handoff), or the error
	// that ends the reader.
	step(c *loopConn) error
	// handoff serves the connection on a goroutine of its own from now
	// on, to its end: a legacy request that is not inline must not hold
	// up the loop, and the door keeps its requests in order.
	handoff(c *loopConn)
}

// errHandoff is a loopDoor's step asking to leave the loop (handoff).
var errHandoff = errors.New("served on a goroutine from now on")

// loopReadBuf is the size of a loop's read buffer: the most one read of a
// connection takes.
const loopReadBuf = 64 << 10

// newLoops starts n loops (0: one per core).
func newLoops(srv *Server, n int) (*loops, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	ls := &loops{}
	for range n {
		l, err := newLoop(srv)
		if err != nil {
			ls.close()
			return nil, err
		}
		ls.all = append(ls.all, l)
	}
	return ls, nil
}

func newLoop(srv *Server) (*loop, error) {
	set, err := newEpollSet()
	if err != nil {
		return nil, err
	}
	l := &loop{srv: srv, set: set, conns: make(map[uint64]*loopConn),
		buf: make([]byte, loopReadBuf), events: make([]unix.EpollEvent, 256), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// add deals a session to a loop, whose door's reader reads from c;
// Codec.Wake must post it (loopConn.post). Once posted, what its door's
// reader holds already is served at once.
func (ls *loops) add(c *loopConn, s *session, door loopDoor) {
	ls.pick(c)
	c.adopt(s, door)
}

// pick deals a connection to a loop.
func (ls *loops) pick(c *loopConn) {
	l := ls.all[int(ls.next.Add(1))%len(ls.all)]
	c.l = l
	c.resume = func() { l.post(c) }
}

// adopt makes s, served by door, the connection's session.
func (c *loopConn) adopt(s *session, door loopDoor) {
	c.id, c.s, c.door = s.caller.ID, s, door
	s.rd.resume = c.resume
	s.loopWork = &c.l.elsewhere
}

// newLoopConn returns a connection for a loop, not yet added: its door's
// reader is built on it.
func newLoopConn(fc *fdConn) *loopConn {
	return &loopConn{fc: fc}
}

// loopFor makes a new connection a loop's, when there are loops and the
// loop can own its socket (ownConn); otherwise it returns a nil
// connection and leaves c as it was.
func (s *Server) loopFor(c net.Conn) (*loops, *loopConn) {
	ls := s.loops.Load()
	if ls == nil {
		return nil, nil
	}
	fc := ownConn(c)
	if fc == nil {
		return nil, nil
	}
	return ls, newLoopConn(fc)
}

// count returns how many connections the loops hold.
func (ls *loops) count() int {
	t := 0
	for _, l := range ls.all {
		t += int(l.held.Load())
	}
	return t
}

// close stops the loops, once every session was closed. Later calls do
// nothing.
func (ls *loops) close() {
	for _, l := range ls.all {
		l.close()
	}
}

// post asks the loop to look at a connection: it is new, the writer's
// goroutine is done with it, or it is closing or draining.
func (c *loopConn) post() { c.l.post(c) }

func (l *loop) post(c *loopConn) {
	if c.posted.Swap(true) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return // the loop ended every connection it held as it closed
	}
	l.posted = append(l.posted, c)
	l.set.post() // under mu: close cannot close the eventfd meanwhile
}

func (l *loop) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.set.post()
	<-l.done
	l.set.close()
}

// run is the loop's goroutine. After a wake-up with events it looks
// again without waiting, and only when that finds nothing does it yield
// and then wait: under load the next requests are often in already (on
// one CPU, the client ran while the loop wrote). While the loop's
// requests are all served on the loop, it waits in epoll_wait itself,
// which wakes it the quickest. While some of them run on other goroutines
// (methods that are not inline, NATS), it waits in the runtime's poller
// instead: a thread blocked in epoll_wait keeps its P, and those
// goroutines, which answer the requests, would wait for it.
func (l *loop) run() {
	defer close(l.done)
	var posted []*loopConn
	busy := false // the last wake-up had events
	for {
		var k int
		var err error
		var until time.Time
		if len(l.timers) > 0 {
			until = l.timers[0].at
		}
		switch {
		case busy:
			if k, err = l.set.poll(l.events); k == 0 && err == nil {
				runtime.Gosched()
			}
		case l.elsewhere.Load() > 0:
			if k, err = l.set.wait(l.events, until); err != nil {
				// The runtime cannot watch the set (the process is out of
				// descriptors, say): block, as when all is on the loop.
				if !l.watchFailed {
					l.watchFailed = true
					l.srv.log.Warn("an event loop waits in epoll_wait while requests run elsewhere", slog.Any(keyError, err))
				}
				k, err = l.set.block(l.events, until)
			}
		default:
			k, err = l.set.block(l.events, until)
		}
		if err != nil {
			return // cannot happen with a valid set and buffer
		}
		busy = k > 0
		for _, ev := range l.events[:k] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == wakeKey {
				l.set.taken()
				l.mu.Lock()
				posted, l.posted = l.posted, posted[:0]
				closed := l.closed
				l.mu.Unlock()
				for i, c := range posted {
					posted[i] = nil
					c.posted.Store(false)
					l.look(c)
				}
				if closed {
					l.endAll()
					return
				}
				continue
			}
			if c := l.conns[id]; c != nil && !c.blocked {
				l.serve(c)
			}
		}
		for len(l.timers) > 0 && !time.Now().Before(l.timers[0].at) {
			t := heap.Pop(&l.timers).(timer)
			c := t.c
			if l.conns[c.id] != c {
				continue
			}
			if !c.blocked {
				l.serve(c)
			}
			if t.linger && l.conns[c.id] == c {
				// The linger is over, whether or not the connection is
				// blocked on its output: the loop does not wait for the
				// socket's own read deadline, which the runtime may mark
				// passed a moment after this timer, and a blocked
				// connection would not be read before it.
				l.leave(c)
				c.finish(os.ErrDeadlineExceeded)
			}
		}
	}
}

// look handles a posted connection: it joins the loop, comes back from
// the writer's goroutine, or is closing or draining. Then it is served:
// its reader sees what there is to see.
func (l *loop) look(c *loopConn) {
	if !c.added {
		c.added = true
		if c.s != nil {
			l.held.Add(1)
		} else {
			l.after(time.Until(c.hs.deadline), c, false) // the handshake's timeout
		}
		l.conns[c.id] = c
		if !l.watch(c, unix.EPOLL_CTL_ADD) {
			l.unwatched(c)
			return
		}
	} else if l.conns[c.id] != c {
		return // ended already
	}
	if c.blocked {
		if c.s.out.Len() > 0 && !c.s.closed.Load() && !c.s.out.FlushNow(c.resume) {
			return // the writer took more meanwhile: resume comes again
		}
		c.blocked = false
		if !l.watch(c, unix.EPOLL_CTL_ADD) {
			l.unwatched(c)
			return
		}
	}
	if c.s != nil && c.s.finished.Load() && !c.linger {
		// A drain is over: the reader waits for the peer to close, up to
		// Linger (its read deadline says so too).
		c.linger = true
		l.after(c.s.srv.cfg.Linger, c, true)
	}
	l.serve(c)
}

// unwatched ends a connection its loop could not add to its epoll set:
// closed meanwhile (the read sees it), or the system refused (no memory,
// the user's epoll watches used up), when it would never be read again.
func (l *loop) unwatched(c *loopConn) {
	l.serve(c)
	if l.conns[c.id] == c {
		c.blocked = true // not in the set: leave must not take it out
		l.leave(c)
		c.finish(errUnwatched)
	}
}

// errUnwatched ends a connection the system would not let its loop watch.
var errUnwatched = errors.New("the event loop could not watch the connection")

// endAll ends every connection the loop holds, as it closes: Shutdown
// gave up waiting for them, and closed their sessions.
func (l *loop) endAll() {
	for _, c := range l.conns {
		l.leave(c)
		c.finish(net.ErrClosed)
	}
}

// after serves c again in d, when it is still in the loop; a linger's
// end also ends it.
func (l *loop) after(d time.Duration, c *loopConn, linger bool) {
	heap.Push(&l.timers, timer{at: time.Now().Add(d), c: c, linger: linger})
}

// watch adds the connection's socket to the epoll set (op ADD) or takes
// it out (DEL). It reports false when the socket is closed.
func (l *loop) watch(c *loopConn, op int) bool {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP,
		Fd:     int32(uint32(c.id)), // the 64-bit event data holds the session id
		Pad:    int32(uint32(c.id >> 32)),
	}
	// The descriptor stays open while the loop holds it (fdConn.release).
	return unix.EpollCtl(l.set.fd, op, c.fc.fd, &ev) == nil
}

// serve reads once what has arrived on a connection and hands every whole
// message to the session core; the answers of the burst are written
// without waiting. A connection whose output the socket did not take is
// taken out of the set until its writer's goroutine is done.
func (l *loop) serve(c *loopConn) {
	c.mayRead = true
	if c.s == nil && !l.hello(c) {
		return
	}
	s := c.s
	for {
		err := c.door.step(c)
		if err == wire.ErrWouldBlock { //nolint:errorlint // the sentinel, as returned
			break
		}
		if err != nil || s.rd.blocked {
			c.keep()
		}
		if err != nil {
			l.leave(c)
			switch {
			case err == errHandoff: //nolint:errorlint // the sentinel, as returned
				c.conn = s.conn // blocking reads from now on
				go c.door.handoff(c)
			case isProtocolError(err):
				// The last words linger for the peer to read them, which
				// is not the loop's to wait for.
				go c.finish(err)
			default:
				c.finish(err)
			}
			return
		}
		if l.blocks(c) {
			return
		}
	}
	c.mayRead = false // all read was handed over: reads return ErrWouldBlock only then
	if s.rd.busy {
		// A wake-up is a burst: its answers go out in one write.
		s.burstDone(true)
		if l.blocks(c) {
			return
		}
	}
	// Between bursts a connection keeps no buffer of the last one.
	if cap(s.rd.pend) > keepParked {
		s.rd.pend = nil
	}
	if cap(s.rd.scratch) > keepParked {
		s.rd.scratch = nil
	}
}

// blocks reports whether the burst's output was left to the writer's
// goroutine; the connection is then out of the set until resume.
func (l *loop) blocks(c *loopConn) bool {
	if !c.s.rd.blocked {
		return false
	}
	c.s.rd.blocked = false
	c.blocked = true
	l.watch(c, unix.EPOLL_CTL_DEL)
	return true
}

// leave takes an ending connection out of the loop.
func (l *loop) leave(c *loopConn) {
	if l.conns[c.id] != c {
		return
	}
	delete(l.conns, c.id)
	if c.s != nil {
		l.held.Add(-1)
	}
	if !c.blocked {
		l.watch(c, unix.EPOLL_CTL_DEL)
	}
	c.fc.release()
}

// isProtocolError tells the errors that readEnded answers with the door's
// last words, and a linger.
func isProtocolError(err error) bool {
	_, ok := errors.AsType[*wire.Error](err)
	return ok || errors.Is(err, io.ErrUnexpectedEOF)
}

// finish ends a session whose reader stopped for good, with the error
// that stopped it; a connection still in its handshake fails it.
func (c *loopConn) finish(err error) {
	if c.s == nil {
		c.l.srv.helloFailed(c.fc, err)
		return
	}
	c.s.end(c.s.readEnded(err))
	c.s.srv.leaveBinary(c.s.conn)
}

// Read reads what has arrived, once per wake-up. The one read takes
// whatever has arrived, up to the loop's buffer, however little the
// reader asked for (a reader waits with a small buffer); the reader gets
// the rest from the following Reads, without another system call.
func (c *loopConn) Read(p []byte) (int, error) {
	if len(c.rest) == 0 {
		if c.conn != nil {
			return c.conn.Read(p)
		}
		b, err := c.readOnce()
		if err != nil {
			return 0, err
		}
		c.rest = b
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// Lend reads what has arrived, once per wake-up, and lends it in the
// loop's buffer (wire.Lender): the native door reads its frames where
// they arrived. Once the connection left its loop, or while bytes of the
// last read wait in rest, it does not lend.
func (c *loopConn) Lend() ([]byte, error) {
	if c.conn != nil || len(c.rest) > 0 {
		return nil, nil
	}
	return c.readOnce()
}

// readOnce reads what has arrived into the loop's buffer, once per
// wake-up: wire.ErrWouldBlock when nothing has, or it was read already.
func (c *loopConn) readOnce() ([]byte, error) {
	if !c.mayRead {
		return nil, wire.ErrWouldBlock
	}
	c.mayRead = false
	n, err := c.fc.read(c.l.buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return nil, wire.ErrWouldBlock
	case err != nil:
		return nil, err
	case n == 0:
		return nil, io.EOF
	}
	return c.l.buf[:n], nil
}

// keep copies what was read and not handed over yet out of the loop's
// buffer: the loop leaves the connection in the middle of a wake-up (its
// output is blocked, or it leaves the loop), and reads others into it.
func (c *loopConn) keep() {
	if len(c.rest) > 0 {
		c.rest = append([]byte(nil), c.rest...)
	}
	c.mayRead = false
	if c.rd != nil {
		c.rd.Keep()
	}
}

// timer serves c again at at: the end of a linger, or of the wait for
// the rest of a message.
type timer struct {
	at     time.Time
	c      *loopConn
	linger bool // the end of the linger: the connection ends, whatever its socket says
}

// timerHeap orders a loop's timers, soonest first.
type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	if len(old) == 1 && cap(old) > keepTimers {
		*h = nil // a storm of handshakes is over: its array goes
	}
	return t
}

// keepTimers is the most timers whose room a loop keeps once they are
// all gone.
const keepTimers = 256

// handshake is a native connection's state on a loop until its HELLO is
// in: when the handshake times out. (Its frame reader is loopConn.rd,
// which the session's goes on with.)
type handshake struct {
	deadline time.Time
}

// helloOnLoop gives a new plain TCP native connection to a loop for its
// handshake, when there are loops: the loop reads the HELLO as it
// arrives, its timer ends a handshake that takes too long, and it serves
// the session from then on. Nothing waits for the peer on a goroutine of
// its own. It reports whether it did; TLS connections (and any whose
// descriptor cannot be taken) do their handshake on the caller's
// goroutine instead.
func (s *Server) helloOnLoop(c net.Conn) bool {
	ls, lc := s.loopFor(c)
	if lc == nil {
		return false
	}
	fc := lc.fc
	if !s.trackHandshake(fc, true) {
		_ = fc.Close()
		s.leaveBinary(fc)
		return true
	}
	lc.id = s.ids.Add(1) // its session's, from its first frame on
	// Before HELLO a peer is untrusted: the reader accepts no frame over
	// MaxHelloFrame, so a connection costs a few KiB until it has
	// authenticated.
	lc.rd = wire.NewReader(lc, min(MaxHelloFrame, s.cfg.MaxFrame))
	lc.hs = &handshake{deadline: time.Now().Add(s.cfg.HandshakeTimeout)}
	ls.pick(lc)
	lc.post()
	return true
}

// hello reads a handshaking connection's HELLO as far as it has arrived,
// and reports whether its session now exists and can be served on. A
// HELLO not whole by the deadline, malformed, or with a token refused
// ends the connection as on a goroutine, with the same last words
// (helloFailed).
func (l *loop) hello(c *loopConn) bool {
	srv := l.srv
	hello, err := helloOf(c.rd.ReadFrame())
	if err == wire.ErrWouldBlock { //nolint:errorlint // the sentinel, as returned
		if time.Now().Before(c.hs.deadline) {
			c.mayRead = false
			return false
		}
		err = os.ErrDeadlineExceeded
	}
	var admin bool
	if err == nil {
		var aerr error
		if admin, aerr = srv.Authenticate(remoteText(c.fc), hello.Token, DoorNative); aerr != nil {
			err = &wire.Error{Code: wire.CodeUnauthorized, Msg: aerr.Error()}
		}
	}
	if err != nil {
		c.keep()
		l.leave(c)
		srv.helloFailed(c.fc, err)
		return false
	}
	srv.trackHandshake(c.fc, false)
	n := srv.welcome(c.fc, c.rd, hello, "", admin, c.id)
	c.hs = nil
	c.adopt(n.s, n)
	n.loop = c
	l.held.Add(1)
	srv.register(n.s)
	// The WELCOME goes out now; what came after it in this read is served
	// next.
	if !n.s.out.FlushNow(c.resume) {
		// The socket did not take it all (a first write, so hardly
		// ever): the writer's goroutine has it, and the connection
		// leaves the set until it is done (resume), as after a burst.
		n.s.rd.blocked = true
		c.keep()
		l.blocks(c)
		return false
	}
	return true
}

// helloFailed ends a loop's connection whose handshake failed, as
// handshakeNative does: counted, and told why when the HELLO broke the
// protocol or its token was refused.
func (s *Server) helloFailed(fc *fdConn, err error) {
	s.trackHandshake(fc, false)
	s.log.Debug("handshake failed", slog.String(keyRemote, fc.RemoteAddr().String()), slog.Any(keyError, err))
	we, told := errors.AsType[*wire.Error](err)
	if !told || we.Code != wire.CodeUnauthorized {
		s.metrics.handshakeFailed[handshakeFailure(err, false)].Add(1)
	}
	if !told {
		_ = fc.Close()
		s.leaveBinary(fc)
		return
	}
	go func() { // the last words linger for the peer to read them
		refuse(fc, nativeFatal(nil, we.Code, we.Msg), s.cfg.Linger)
		s.leaveBinary(fc)
	}()
}

// loopNative deals a native connection whose handshake is done to a
// loop, when there are loops and the loop owns the socket (ownConn): it
// sets n.loop, which the caller posts once the session is registered.
func (s *Server) loopNative(n *nativeConn) {
	ls := s.loops.Load()
	fc, ok := n.s.conn.(*fdConn)
	if ls == nil || !ok {
		return
	}
	c := newLoopConn(fc)
	ls.add(c, n.s, n)
	n.rd.SetSource(c)
	c.rd = n.rd
	n.loop = c
}

// step reads and hands over the next frame.
func (n *nativeConn) step(*loopConn) error {
	f, err := n.rd.ReadFrame()
	if err == nil {
		err = n.frame(f)
	}
	if err != nil {
		return err
	}
	n.s.frameDone(true) // the loop ends the burst when the wake-up's input is used up
	return nil
}

// handoff is never asked of the native door: its requests that are not
// inline run beside the reader.
func (n *nativeConn) handoff(c *loopConn) { c.finish(errHandoff) }

// loopLegacy serves a new legacy connection on a loop, when there are
// loops and the connection can be on one. It reports whether it did.
func (s *Server) loopLegacy(conn net.Conn, lc *legacyConn) bool {
	ls, c := s.loopFor(conn)
	if c == nil {
		return false
	}
	fc := c.fc
	lc.dec = legacy.NewDecoder(c)
	lc.loop = c
	sess := s.newSession(fc, DoorLegacy, "", 0, func(*session) Codec { return lc })
	ls.add(c, sess, lc)
	s.register(sess)
	c.post()
	return true
}

// step decodes and hands over the next packet. A packet begun must be
// whole within HandshakeTimeout, as on a goroutine; a request that is not
// inline (math served by a worker) moves the connection to a goroutine,
// where the door's requests are served in order.
func (lc *legacyConn) step(c *loopConn) error {
	s := c.s
	p, err := lc.dec.Decode()
	if err == wire.ErrWouldBlock { //nolint:errorlint // the sentinel, as returned
		if lc.dec.Buffered() == 0 || s.finished.Load() {
			c.partial = 0
			return err
		}
		timeout := s.srv.cfg.HandshakeTimeout
		switch now := time.Now().UnixNano(); {
		case c.partial == 0:
			c.partial = now
			c.l.after(timeout, c, false)
		case time.Duration(now-c.partial) >= timeout:
			return errLegacyTruncated
		}
		return err
	}
	c.partial = 0
	if err != nil {
		if errors.Is(err, legacy.ErrNativeHello) {
			lc.native = true
		}
		return err
	}
	s.input(legacy.HeaderLen + len(p.Command))
	r := lc.decoded(s, p)
	if r.m != nil && !r.m.Inline {
		lc.held = r
		return errHandoff
	}
	s.request(r)
	s.frameDone(true) // the loop ends the burst when the wake-up's input is used up
	return nil
}

// handoff serves the request step held, then the rest of the connection,
// on this goroutine.
func (lc *legacyConn) handoff(c *loopConn) {
	s := c.s
	s.rd.resume = nil // this reader may wait for its writes
	s.request(lc.held)
	lc.held = request{}
	s.frameDone(lc.dec.HasPacket())
	s.end(s.readLegacy(lc, lc.dec))
	s.srv.leaveBinary(s.conn)
}
