package server

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/wire"
)

// Listener returns ln with the server's connection admission in front of
// it, for a door that another server accepts on (the web and admin
// doors' HTTP servers): each connection is counted against MaxConns and
// MaxConnsPerIP like the native and legacy doors' own, and refused, with
// refusal's bytes (an HTTP 503, say; nil closes without a word, for a TLS
// listener), when over them. A connection admitted leaves the counts when
// it is closed.
func (s *Server) Listener(ln net.Listener, door string, refusal func(code wire.Code, msg string) []byte) net.Listener {
	s.AddDoor(door)
	return &admitListener{Listener: ln, srv: s, door: door, refusal: refusal}
}

// HTTPRefusal is the refusal of an HTTP door: 503 with the reason, and
// the connection closed.
func HTTPRefusal(_ wire.Code, msg string) []byte {
	body := msg + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// AdminListener returns ln with a connection limit of its own, max, for
// the admin listener: its connections do not count against the clients'
// MaxConns and MaxConnsPerIP, so that clients filling them never starve
// the probes, the metrics and the operator; over max, the refusal.
func (s *Server) AdminListener(ln net.Listener, door string, max int, refusal func(code wire.Code, msg string) []byte) net.Listener {
	s.AddDoor(door)
	return &admitListener{Listener: ln, srv: s, door: door, refusal: refusal, own: &atomic.Int64{}, max: int64(max)}
}

type admitListener struct {
	net.Listener
	srv     *Server
	door    string
	refusal func(wire.Code, string) []byte
	own     *atomic.Int64 // a count of its own, not the server's; nil: the server's admission
	max     int64         // the limit of own
}

// admit admits a connection from ip, and returns how it leaves.
func (l *admitListener) admit(ip netip.Addr) (func(), *RefusedError) {
	if l.own == nil {
		if why := l.srv.Admit(ip, l.door); why != nil {
			return nil, why
		}
		return func() { l.srv.Leave(ip) }, nil
	}
	if l.own.Add(1) > l.max {
		l.own.Add(-1)
		l.srv.logRefusal(l.srv.metrics.door(l.door), ip.String(), ErrTooManyConns)
		return nil, ErrTooManyConns
	}
	return func() { l.own.Add(-1) }, nil
}

// Accept returns the next connection admitted; refused ones are answered
// and closed here.
func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		leave, why := l.admit(ip)
		if why != nil {
			l.srv.refuseConn(c, listener{door: l.door, fatal: func(b []byte, code wire.Code, msg string) []byte {
				if l.refusal == nil {
					return b
				}
				return append(b, l.refusal(code, msg)...)
			}}, why)
			continue
		}
		l.srv.Accepted(l.door)
		return &admittedConn{Conn: c, leave: leave}, nil
	}
}

// admittedConn leaves the server's counts when it is closed, once.
type admittedConn struct {
	net.Conn
	once  sync.Once
	leave func()
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.leave)
	return err
}

// CloseWrite half-closes a TCP connection (the HTTP server uses it for a
// graceful close).
func (c *admittedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// refuseLinger bounds how long a refused connection is kept to let the
// peer read its refusal: it is answered and closed within it.
const refuseLinger = 100 * time.Millisecond
