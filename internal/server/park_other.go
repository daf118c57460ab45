//go:build !linux

package server

import "errors"

// poller is Linux only: elsewhere connections do not park.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("no poller on this system") }

func (p *poller) park(*nativeConn) bool { return false }
func (p *poller) forget(uint64)         {}
func (p *poller) count() int            { return 0 }
func (p *poller) close()                {}
