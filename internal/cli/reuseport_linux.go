package cli

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort makes listeners share their port with other processes that set
// it too (SO_REUSEPORT): the kernel spreads new connections over them, so
// several nexo processes can serve one address.
func reusePort(lc *net.ListenConfig) error {
	lc.Control = func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}
	return nil
}
