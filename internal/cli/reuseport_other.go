//go:build !linux

package cli

import (
	"errors"
	"net"
)

// reusePort is Linux-only here.
func reusePort(*net.ListenConfig) error {
	return errors.New("--reuseport needs Linux")
}
