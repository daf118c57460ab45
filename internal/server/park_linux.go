package server

import (
	"errors"
	"sync"

	"golang.org/x/sys/unix"
)

// poller waits for input on parked connections with one epoll set and one
// goroutine. Each socket is armed one-shot: it reports once, and is armed
// again when its session parks again.
type poller struct {
	epfd int
	stop int // an eventfd that ends run

	mu     sync.Mutex
	parked map[uint64]*nativeConn // guarded by mu
	closed bool                   // guarded by mu
	done   chan struct{}          // closed when run has returned
}

// stopKey is the event key of the stop eventfd; session ids start at 1.
const stopKey = 0

func newPoller() (*poller, error) {
	epfd, stop, err := newEpoll()
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: epfd, stop: stop, parked: make(map[uint64]*nativeConn), done: make(chan struct{})}
	go p.run()
	return p, nil
}

// newEpoll returns an epoll set holding an eventfd, under event key 0,
// that wakes its waiter.
func newEpoll() (epfd, eventfd int, err error) {
	epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, -1, err
	}
	eventfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return -1, -1, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, eventfd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(eventfd)
		return -1, -1, err
	}
	return epfd, eventfd, nil
}

// wake adds one to an eventfd, waking whoever waits on the epoll set
// that holds it. It fails only when the counter is full, which wakes it
// just the same.
func wake(eventfd int) {
	one := [8]byte{1}
	_, _ = unix.Write(eventfd, one[:])
}

// park arms the session's socket and remembers the session until it
// wakes. It reports false when the socket could not be armed (it is
// closed, or the poller is).
func (p *poller) park(n *nativeConn) bool {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     int32(uint32(n.s.caller.ID)), // the 64-bit event data holds the session id
		Pad:    int32(uint32(n.s.caller.ID >> 32)),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	var err error
	// Control holds the descriptor open while epoll_ctl runs, so a
	// concurrent Close cannot hand its number to another socket first.
	cerr := n.raw.Control(func(fd uintptr) {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(err, unix.ENOENT) { // parked for the first time
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if cerr != nil || err != nil {
		return false
	}
	p.parked[n.s.caller.ID] = n
	return true
}

// forget drops a session that woke.
func (p *poller) forget(id uint64) {
	p.mu.Lock()
	delete(p.parked, id)
	p.mu.Unlock()
}

// count returns how many sessions are parked.
func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// run wakes the sessions whose sockets report input, a hang-up or an
// error, until close.
func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return // cannot happen with a valid epfd and buffer
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == stopKey {
				return
			}
			p.mu.Lock()
			s := p.parked[id]
			p.mu.Unlock()
			if s != nil {
				s.Wake()
			}
		}
	}
}

// close stops the poller, once every session was closed (which woke the
// parked ones). It waits for run to return. Later calls do nothing.
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	wake(p.stop)
	<-p.done
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.stop)
}
