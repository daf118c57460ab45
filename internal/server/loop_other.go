//go:build !linux

package server

import (
	"errors"
	"net"
)

// The event loops are Linux only: elsewhere connections have goroutines.
type loops struct{}

// loopConn is never made where there are no loops.
type loopConn struct{}

func newLoops(*Server, int) (*loops, error) { return nil, errors.New("no event loops on this system") }

func (*loops) count() int { return 0 }
func (*loops) close()     {}
func (*loopConn) post()   {}

func (*Server) loopNative(*nativeConn) bool           { return false }
func (*Server) loopLegacy(net.Conn, *legacyConn) bool { return false }
func (*Server) helloOnLoop(net.Conn) bool             { return false }

// ownConn never takes a descriptor where there are no loops.
func ownConn(net.Conn) net.Conn { return nil }
