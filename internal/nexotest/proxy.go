package nexotest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP connections to a target: the network between a
// client and a server, which a test can slow, stall or cut.
type Proxy struct {
	Addr string // where clients connect

	ln      net.Listener
	target  string
	delay   atomic.Int64 // ns each chunk from the target is held back
	stalled atomic.Bool  // nothing is forwarded either way

	mu    sync.Mutex
	conns []net.Conn // guarded by mu: both sides of every connection
}

// NewProxy listens on a loopback port and forwards each connection to
// target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target}
	go p.accept()
	t.Cleanup(p.Cut)
	return p
}

// Delay holds back each chunk of the target's answers by d (0: none).
func (p *Proxy) Delay(d time.Duration) { p.delay.Store(int64(d)) }

// Stall stops forwarding, either way, as a peer that stopped answering
// but whose connection is still up: what is sent is dropped.
func (p *Proxy) Stall() { p.stalled.Store(true) }

// Cut closes every connection and the listener, as a peer that went away.
func (p *Proxy) Cut() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.forward(s, c, false)
		go p.forward(c, s, true)
	}
}

// forward copies src to dst; answers (from the target) are the ones
// Delay holds back.
func (p *Proxy) forward(dst, src net.Conn, answers bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if answers {
			time.Sleep(time.Duration(p.delay.Load()))
		}
		if p.stalled.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
