package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/wire"
)

// IdleConfig describes a capacity run: many clients that connect, say
// HELLO, answer the server's PINGs and send nothing else.
type IdleConfig struct {
	Addr        string
	Connections int
	// Sources are the local addresses to connect from, in turn. One source
	// address gives at most ~28,000 connections to one server address (the
	// ephemeral port range); 127.0.0.1 to 127.0.0.8 give eight times that.
	// Empty: the system chooses.
	Sources []netip.Addr
	// Hold is how long the clients stay connected once all are up.
	Hold time.Duration
	// DialRate bounds new connections per second (0: 5000), so that the
	// server's accept backlog is not what is measured.
	DialRate int
	// Progress, when set, is called about once a second while connecting
	// and holding.
	Progress func(phase string, up, failed, dropped int)
}

// IdleResult is what a capacity run saw.
type IdleResult struct {
	Addr        string  `json:"addr"`
	Connections int     `json:"connections"` // asked for
	Sources     int     `json:"sources"`
	Up          int     `json:"up"`        // welcomed by the server
	Failed      int     `json:"failed"`    // could not connect or were refused
	Dropped     int     `json:"dropped"`   // closed by the server while holding
	Pings       uint64  `json:"pings"`     // PINGs answered while holding
	ConnectS    float64 `json:"connect_s"` // how long connecting took
	HoldS       float64 `json:"hold_s"`    // how long the clients were held
	FirstError  string  `json:"first_error,omitempty"`
}

// Idle opens the connections, holds them for Hold while answering PINGs,
// then closes them all.
func Idle(ctx context.Context, cfg IdleConfig) (IdleResult, error) {
	if cfg.Connections < 1 || cfg.Connections > 1_000_000 {
		return IdleResult{}, errors.New("loadgen: connections must be 1..1000000")
	}
	if cfg.DialRate <= 0 {
		cfg.DialRate = 5000
	}
	res := IdleResult{Addr: cfg.Addr, Connections: cfg.Connections, Sources: len(cfg.Sources)}
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, cfg.Connections)
		firstErr error
		failed   atomic.Int64
		dropped  atomic.Int64
		pings    atomic.Uint64
		holding  atomic.Bool
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	progress := func(phase string) {
		if cfg.Progress != nil {
			mu.Lock()
			up := len(conns)
			mu.Unlock()
			cfg.Progress(phase, up, int(failed.Load()), int(dropped.Load()))
		}
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	interval := time.Second / time.Duration(cfg.DialRate)
	next := time.Now()
	sem := make(chan struct{}, 256) // handshakes in progress
	for i := 0; i < cfg.Connections && ctx.Err() == nil; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		select {
		case <-tick.C:
			progress("connecting")
		default:
		}
		sem <- struct{}{}
		var src netip.Addr
		if len(cfg.Sources) > 0 {
			src = cfg.Sources[i%len(cfg.Sources)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, rd, err := dialIdle(ctx, cfg.Addr, src, i)
			<-sem
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			holdIdle(c, rd, &pings, func() {
				if holding.Load() {
					dropped.Add(1)
				}
			})
		}()
	}
	for range cap(sem) { // every handshake has ended
		sem <- struct{}{}
	}
	res.ConnectS = time.Since(start).Seconds()
	holding.Store(true)
	progress("holding")
	holdStart := time.Now()
	hold := time.NewTimer(cfg.Hold)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hold.C:
			break wait
		case <-tick.C:
			progress("holding")
		}
	}
	hold.Stop()
	res.HoldS = time.Since(holdStart).Seconds()
	holding.Store(false)
	mu.Lock()
	res.Up = len(conns)
	for _, c := range conns {
		_ = c.Close()
	}
	mu.Unlock()
	wg.Wait()
	res.Failed, res.Dropped, res.Pings = int(failed.Load()), int(dropped.Load()), pings.Load()
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	if res.Up == 0 && firstErr != nil {
		return res, firstErr
	}
	return res, nil
}

// dialIdle connects from src (if valid) and says HELLO.
func dialIdle(ctx context.Context, addr string, src netip.Addr, i int) (net.Conn, *wire.Reader, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connection %d: %w", i, err)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, rd, err := client.Handshake(hctx, c, &client.Options{Name: "idle", MaxFrame: 4 << 10})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("connection %d: %w", i, err)
	}
	return c, rd, nil
}

// holdIdle answers PINGs until the connection ends; gone is called if the
// server closes it.
func holdIdle(c net.Conn, rd *wire.Reader, pings *atomic.Uint64, gone func()) {
	var out []byte
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			gone()
			return
		}
		switch f.Type {
		case wire.TypePing:
			out = wire.AppendFrame(out[:0], wire.TypePong, 0, f.ID, f.Body)
			if _, err := c.Write(out); err != nil {
				gone()
				return
			}
			pings.Add(1)
		case wire.TypeGoodbye:
			gone()
			return
		}
	}
}
