package server

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// poller waits for input on parked connections with one epoll set and one
// goroutine. Each socket is armed one-shot: it reports once, and is armed
// again when its session parks again.
type poller struct {
	set *epollSet // its eventfd ends run

	mu     sync.Mutex
	parked map[uint64]*nativeConn // guarded by mu
	closed bool                   // guarded by mu
	done   chan struct{}          // closed when run has returned
}

func newPoller() (*poller, error) {
	set, err := newEpollSet()
	if err != nil {
		return nil, err
	}
	// The poller always waits in the runtime's poller: the sessions it
	// wakes go on on goroutines. Watched from the start, it holds its
	// descriptors before the server serves.
	if err := set.watch(); err != nil {
		set.close()
		return nil, err
	}
	p := &poller{set: set, parked: make(map[uint64]*nativeConn), done: make(chan struct{})}
	go p.run()
	return p, nil
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
		err = unix.EpollCtl(p.set.fd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(err, unix.ENOENT) { // parked for the first time
			err = unix.EpollCtl(p.set.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
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
		n, err := p.set.wait(events, time.Time{})
		if err != nil {
			return // cannot happen with a valid set and buffer
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == wakeKey {
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
	p.set.post()
	<-p.done
	p.set.close()
}
