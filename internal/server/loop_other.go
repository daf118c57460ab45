//go:build !linux

package server

import (
	"errors"
	"syscall"
)

// The event loops are Linux only: elsewhere connections have goroutines.
type loops struct{}

// loopState is empty where there are no loops.
type loopState struct{ l *loop }

type loop struct{}

func newLoops(*Server, int) (*loops, error) { return nil, errors.New("no event loops on this system") }

func (*loops) add(*nativeConn) {}
func (*loops) count() int      { return 0 }
func (*loops) close()          {}
func (*loop) post(*nativeConn) {}

func tryWriter(syscall.RawConn) func([]byte) (int, error) { return nil }
