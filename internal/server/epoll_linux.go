package server

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epollSet is an epoll set that its waiter can wait on in two ways.
//
// It can block its thread in epoll_wait (block): the quickest wake-up,
// but the thread keeps its P, and goroutines readied meanwhile may wait
// for the runtime's monitor to take it back, 20 µs to 10 ms later.
//
// Or it can park in the Go runtime's network poller (wait): the set's
// descriptor is pollable (ready while any of its events is), so the
// runtime can watch it as it watches a socket, and a goroutine with
// nothing to do gives its P back at once. The wake-up costs a thread
// hand-off more. And while the runtime watches the set, each new event
// also wakes the runtime's own poller, even when nobody is parked: so a
// duplicate of the descriptor is watched only from a wait on, until
// watchFor passes without one.
type epollSet struct {
	fd   int // the epoll set
	wake int // an eventfd in the set under event key 0 (wakeKey)

	f        *os.File        // a duplicate of fd, watched by the runtime's poller; nil: not watched
	rc       syscall.RawConn // f's
	deadline time.Time       // f's read deadline, as last set
	waited   time.Time       // when the last wait ended
	failed   time.Time       // when watch last failed: it is not tried again for watchFor

	// what look reads into and found, for wait: look is made once, as
	// a closure made per wait would be allocated per wait
	look   func(uintptr) bool
	events []unix.EpollEvent
	found  int
	err    error
}

// wakeKey is the event key of an epoll set's eventfd; session ids start
// at 1.
const wakeKey = 0

// watchFor is how long the runtime's poller watches an epoll set after a
// wait.
const watchFor = time.Second

// newEpollSet returns an epoll set holding its eventfd.
func newEpollSet() (*epollSet, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	e := &epollSet{fd: fd}
	e.look = e.lookNow
	if e.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // Fd and Pad 0: wakeKey
	if err := unix.EpollCtl(e.fd, unix.EPOLL_CTL_ADD, e.wake, &ev); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// watch has the runtime's poller watch a duplicate of the set's
// descriptor (os.NewFile registers a non-blocking one), unless it does.
// After a failure it fails at once for watchFor: the process may be short
// of descriptors.
func (e *epollSet) watch() error {
	if e.f != nil {
		return nil
	}
	if time.Since(e.failed) < watchFor {
		return errWatchLater
	}
	if err := e.startWatch(); err != nil {
		e.failed = time.Now()
		return err
	}
	return nil
}

// errWatchLater is watch's answer for a while after it failed.
var errWatchLater = errors.New("the runtime's poller could not watch the epoll set a moment ago")

// startWatch is watch's work.
func (e *epollSet) startWatch() error {
	fd, err := unix.FcntlInt(uintptr(e.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return err
	}
	f := os.NewFile(uintptr(fd), "epoll")
	// os.NewFile hands back a file the runtime does not watch when it
	// could not register it (its epoll set full, no memory): only a
	// watched file takes deadlines.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return err
	}
	e.f, e.rc, e.deadline = f, rc, time.Time{}
	return nil
}

// unwatch ends the runtime's watch: closing the duplicate takes it out
// of the runtime's epoll set.
func (e *epollSet) unwatch() {
	if e.f != nil {
		_ = e.f.Close()
		e.f, e.rc = nil, nil
	}
}

// wait returns the events ready now, into events. When none is, it parks
// the goroutine in the runtime's poller until one is, or until the time
// until (zero: no limit), and then returns 0. It parks for 2 s at most:
// what made the caller park may end without an event (the last request
// a loop's connection left running elsewhere ends after the connection
// closed), and the caller is to look again. Only one goroutine may wait
// or block at a time.
func (e *epollSet) wait(events []unix.EpollEvent, until time.Time) (int, error) {
	if err := e.watch(); err != nil {
		return 0, err
	}
	// Whole seconds, 1 to 2 s ahead: the deadline changes once a second,
	// not on every wait.
	if limit := time.Now().Truncate(time.Second).Add(2 * time.Second); until.IsZero() || limit.Before(until) {
		until = limit
	}
	if !until.Equal(e.deadline) {
		if err := e.f.SetReadDeadline(until); err != nil {
			return 0, err
		}
		e.deadline = until
	}
	e.events, e.found, e.err = events, 0, nil // Read may return before a look
	err := e.rc.Read(e.look)
	e.events = nil
	e.waited = time.Now()
	switch {
	case e.err != nil:
		return 0, e.err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	}
	return e.found, err
}

// block returns the events ready now, into events, and when none is
// blocks its thread in epoll_wait until one is or until the time until
// (zero: no limit), and then returns 0. It also returns 0 when the
// runtime's watch is to end (watchFor), and ends it on the next block.
func (e *epollSet) block(events []unix.EpollEvent, until time.Time) (int, error) {
	if e.f != nil {
		if end := e.waited.Add(watchFor); time.Now().Before(end) {
			if until.IsZero() || end.Before(until) {
				until = end
			}
		} else {
			e.unwatch()
		}
	}
	msec := -1
	if !until.IsZero() {
		msec = max(int(time.Until(until).Milliseconds())+1, 0)
	}
	k, err := unix.EpollWait(e.fd, events, msec)
	if errors.Is(err, unix.EINTR) {
		return 0, nil
	}
	return k, err
}

// poll returns the events ready now, into events, without waiting.
func (e *epollSet) poll(events []unix.EpollEvent) (int, error) {
	for {
		k, err := unix.EpollWait(e.fd, events, 0)
		if !errors.Is(err, unix.EINTR) {
			return k, err
		}
	}
}

// lookNow is wait's look: it reports whether poll found events or failed.
func (e *epollSet) lookNow(uintptr) bool {
	e.found, e.err = e.poll(e.events)
	return e.found > 0 || e.err != nil
}

// post wakes the set's waiter: its eventfd reports under wakeKey until
// the waiter reads it (taken). It fails only when the counter is full,
// which wakes it just the same.
func (e *epollSet) post() {
	one := [8]byte{1}
	_, _ = unix.Write(e.wake, one[:])
}

// taken resets the eventfd after a wake-up.
func (e *epollSet) taken() {
	var b [8]byte
	_, _ = unix.Read(e.wake, b[:])
}

// close closes the set and its eventfd, once nothing waits on it.
func (e *epollSet) close() {
	e.unwatch()
	_ = unix.Close(e.fd)
	_ = unix.Close(e.wake)
}
