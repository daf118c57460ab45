package server

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkWatch: what it costs the runtime's poller to start and stop
// watching a loop's epoll set holding n descriptors. Adding one epoll set
// to another walks the added set's items (the kernel's loop check), under
// a lock of the whole system.
func BenchmarkWatch(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run("fds="+strconv.Itoa(n), func(b *testing.B) {
			e, err := newEpollSet()
			if err != nil {
				b.Fatal(err)
			}
			defer e.close()
			for range n {
				fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
				if err != nil {
					b.Skipf("%d descriptors: %v", n, err)
				}
				defer unix.Close(fd)
				ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd) + 1}
				if err := unix.EpollCtl(e.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if err := e.watch(); err != nil {
					b.Fatal(err)
				}
				e.unwatch()
			}
		})
	}
}

// BenchmarkAdd: what adding a descriptor to an epoll set and taking it out
// again costs, with and without the runtime's poller watching the set:
// into a watched set, each add takes the kernel's lock of the whole
// system for its path check.
func BenchmarkAdd(b *testing.B) {
	for _, watched := range []bool{false, true} {
		b.Run("watched="+strconv.FormatBool(watched), func(b *testing.B) {
			e, err := newEpollSet()
			if err != nil {
				b.Fatal(err)
			}
			defer e.close()
			if watched {
				if err := e.watch(); err != nil {
					b.Fatal(err)
				}
			}
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 1}
			for b.Loop() {
				if err := unix.EpollCtl(e.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
					b.Fatal(err)
				}
				if err := unix.EpollCtl(e.fd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
