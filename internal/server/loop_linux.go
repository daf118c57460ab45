package server

import (
	"container/heap"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	srv    *Server
	epfd   int
	wakefd int // an eventfd: posted connections, or close

	mu     sync.Mutex
	posted []*nativeConn // guarded by mu: connections to look at
	closed bool          // guarded by mu

	// owned by the loop's goroutine
	conns  map[uint64]*nativeConn
	timers lingerHeap
	held   atomic.Int64 // connections in the loop (read by metrics)
	done   chan struct{}
}

// loopState is what a loop keeps of one of its connections, touched by
// the loop's goroutine only (posted excepted).
type loopState struct {
	l       *loop
	src     loopSource
	added   bool        // in the loop's set and map
	blocked bool        // the writer's goroutine has output to write: not read until resume
	linger  bool        // a linger timer is set
	posted  atomic.Bool // in the loop's posted list
	resume  func()      // posts the connection back: the writer is done
}

// wakeKey is the event key of a loop's eventfd; session ids start at 1.
const wakeKey = 0

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
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, err
	}
	l := &loop{srv: srv, epfd: epfd, wakefd: wakefd, conns: make(map[uint64]*nativeConn), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// add deals a connection whose handshake is done to a loop. Its reader's
// buffered frames, if any, are served at once.
func (ls *loops) add(n *nativeConn) {
	l := ls.all[int(ls.next.Add(1))%len(ls.all)]
	n.loop = &loopState{l: l, src: loopSource{raw: n.raw}}
	n.loop.resume = func() { l.post(n) }
	n.s.rd.resume = n.loop.resume
	n.rd.SetSource(&n.loop.src)
	l.post(n)
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
func (l *loop) post(n *nativeConn) {
	if n.loop.posted.Swap(true) {
		return
	}
	l.mu.Lock()
	l.posted = append(l.posted, n)
	l.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:]) // fails only when the counter is full: it is set anyway
}

func (l *loop) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(l.wakefd, one[:])
	<-l.done
	_ = unix.Close(l.epfd)
	_ = unix.Close(l.wakefd)
}

// run is the loop's goroutine.
func (l *loop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 256)
	var posted []*nativeConn
	for {
		wait := -1
		if len(l.timers) > 0 {
			wait = max(int(time.Until(l.timers[0].at).Milliseconds())+1, 0)
		}
		k, err := unix.EpollWait(l.epfd, events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return // cannot happen with a valid epfd and buffer
		}
		for _, ev := range events[:max(k, 0)] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == wakeKey {
				var b [8]byte
				_, _ = unix.Read(l.wakefd, b[:]) // resets the counter
				l.mu.Lock()
				posted, l.posted = l.posted, posted[:0]
				closed := l.closed
				l.mu.Unlock()
				if closed {
					return
				}
				for i, n := range posted {
					posted[i] = nil
					n.loop.posted.Store(false)
					l.look(n)
				}
				continue
			}
			if n := l.conns[id]; n != nil && !n.loop.blocked {
				l.serve(n)
			}
		}
		for len(l.timers) > 0 && !time.Now().Before(l.timers[0].at) {
			n := heap.Pop(&l.timers).(lingerTimer).n
			if l.conns[n.s.id] == n {
				l.serve(n)
			}
		}
	}
}

// look handles a posted connection: it joins the loop, comes back from
// the writer's goroutine, or is closing or draining. Then it is served:
// its reader sees what there is to see.
func (l *loop) look(n *nativeConn) {
	st := n.loop
	if !st.added {
		if !l.watch(n, unix.EPOLL_CTL_ADD) {
			// Closed before it joined: the read sees the end.
			st.added = true // so that leave does not count it
			l.held.Add(1)
			l.conns[n.s.id] = n
			l.serve(n)
			return
		}
		st.added = true
		l.held.Add(1)
		l.conns[n.s.id] = n
	} else if l.conns[n.s.id] != n {
		return // ended already
	}
	if st.blocked {
		if n.s.out.Len() > 0 && n.s.ctx.Err() == nil && !n.s.out.FlushNow(st.resume) {
			return // the writer took more meanwhile: resume comes again
		}
		st.blocked = false
		l.watch(n, unix.EPOLL_CTL_ADD)
	}
	if n.s.finished.Load() && !st.linger {
		// A drain is over: the reader waits for the peer to close, up to
		// Linger (its read deadline says so too).
		st.linger = true
		heap.Push(&l.timers, lingerTimer{at: time.Now().Add(n.s.srv.cfg.Linger), n: n})
	}
	l.serve(n)
}

// watch adds the connection's socket to the epoll set (op ADD) or takes
// it out (DEL). It reports false when the socket is closed.
func (l *loop) watch(n *nativeConn, op int) bool {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP,
		Fd:     int32(uint32(n.s.id)), // the 64-bit event data holds the session id
		Pad:    int32(uint32(n.s.id >> 32)),
	}
	var err error
	// Control holds the descriptor open while epoll_ctl runs, so a
	// concurrent Close cannot hand its number to another socket first.
	cerr := n.raw.Control(func(fd uintptr) { err = unix.EpollCtl(l.epfd, op, int(fd), &ev) })
	return cerr == nil && err == nil
}

// serve reads once what has arrived on a connection and hands every whole
// frame to the session core; the answers of the burst are written without
// waiting. A connection whose output the socket did not take is taken out
// of the set until its writer's goroutine is done.
func (l *loop) serve(n *nativeConn) {
	s := n.s
	n.loop.src.budget = 1
	for {
		f, err := n.rd.ReadFrame()
		if err == wire.ErrWouldBlock { //nolint:errorlint // the sentinel, as returned
			break
		}
		if err == nil {
			err = n.frame(f)
		}
		if err != nil {
			l.leave(n)
			if isProtocolError(err) {
				// The last words linger for the peer to read them, which
				// is not the loop's to wait for.
				go n.finish(s.readEnded(err))
				return
			}
			n.finish(s.readEnded(err))
			return
		}
		s.frameDone(n.rd.HasFrame())
		if s.rd.blocked {
			s.rd.blocked = false
			n.loop.blocked = true
			l.watch(n, unix.EPOLL_CTL_DEL)
			return
		}
	}
	if s.rd.busy {
		return // a frame is cut in two: the burst goes on
	}
	// Between bursts a connection keeps no buffer of the last one.
	if cap(s.rd.pend) > keepParked {
		s.rd.pend = nil
	}
	if cap(s.rd.scratch) > keepParked {
		s.rd.scratch = nil
	}
}

// leave takes an ending connection out of the loop.
func (l *loop) leave(n *nativeConn) {
	if l.conns[n.s.id] != n {
		return
	}
	delete(l.conns, n.s.id)
	l.held.Add(-1)
	if !n.loop.blocked {
		l.watch(n, unix.EPOLL_CTL_DEL) // fails when closed: closing took it out already
	}
}

// isProtocolError tells the errors that readEnded answers with the door's
// last words, and a linger.
func isProtocolError(err error) bool {
	_, ok := errors.AsType[*wire.Error](err)
	return ok || errors.Is(err, io.ErrUnexpectedEOF)
}

// finish ends a session whose reader stopped for good.
func (n *nativeConn) finish(err error) {
	n.s.end(err)
	n.s.srv.leaveBinary(n.s.conn)
}

// loopSource reads a loop's connection without waiting: once per wake-up,
// then ErrWouldBlock until the loop reads it again.
type loopSource struct {
	raw    syscall.RawConn
	budget int
	read   func(fd uintptr) bool // r.readFD, made once: a method value costs an allocation
	p      []byte                // the read's buffer, and its outcome
	n      int
	err    error
}

// Read reads what has arrived, at most once per budget.
func (r *loopSource) Read(p []byte) (int, error) {
	if r.budget == 0 {
		return 0, wire.ErrWouldBlock
	}
	r.budget--
	if r.read == nil {
		r.read = r.readFD
	}
	r.p = p
	// RawConn.Read refuses a closed socket or a passed read deadline (the
	// linger), and holds the descriptor while the read runs.
	rerr := r.raw.Read(r.read)
	r.p = nil
	if rerr != nil {
		return 0, rerr
	}
	switch n, err := r.n, r.err; {
	case err == unix.EAGAIN || err == unix.EINTR:
		return 0, wire.ErrWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	default:
		return n, nil
	}
}

func (r *loopSource) readFD(fd uintptr) bool {
	r.n, r.err = unix.Read(int(fd), r.p)
	return true
}

// trySink writes to a loop's connection what its socket takes now, for
// the connection's batch writer (batch.Options.TryWrite).
type trySink struct {
	raw   syscall.RawConn
	write func(fd uintptr) bool // s.writeFD, made once
	b     []byte                // the write's buffer, and its outcome
	n     int
	err   error
}

// tryWriter returns a write that never waits: it writes what the socket
// takes now.
func tryWriter(raw syscall.RawConn) func([]byte) (int, error) {
	t := &trySink{raw: raw}
	t.write = t.writeFD
	return t.Write
}

// Write writes what the socket takes of b now. The batch writer calls it
// from one goroutine at a time.
func (t *trySink) Write(b []byte) (int, error) {
	t.b = b
	werr := t.raw.Write(t.write)
	t.b = nil
	if werr != nil {
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			return 0, nil // an old write deadline: the writer's goroutine sets a new one
		}
		return 0, werr
	}
	switch n, err := t.n, t.err; {
	case err == unix.EAGAIN || err == unix.EINTR:
		return 0, nil
	case err != nil:
		return 0, err
	default:
		return n, nil
	}
}

func (t *trySink) writeFD(fd uintptr) bool {
	t.n, t.err = unix.Write(int(fd), t.b)
	return true
}

// lingerTimer ends the linger of a drained connection at at.
type lingerTimer struct {
	at time.Time
	n  *nativeConn
}

// lingerHeap orders linger timers, soonest first.
type lingerHeap []lingerTimer

func (h lingerHeap) Len() int           { return len(h) }
func (h lingerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h lingerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lingerHeap) Push(x any)        { *h = append(*h, x.(lingerTimer)) }
func (h *lingerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = lingerTimer{}
	*h = old[:len(old)-1]
	return t
}
