// Package loadgen is the closed-loop load generator behind `nexo bench`.
//
// Each connection keeps a fixed number of requests outstanding: it sends
// them, and for every answer it receives it sends a new request, so the
// offered load follows the server's pace. Answers are read in bursts and the
// replacement requests of a burst go out in one write, as a pipelining
// client would do. Latencies go into an HDR histogram.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/wire"
)

// Config describes a run.
type Config struct {
	Addr        string        // server address
	Method      string        // default "math.add"
	Payload     []byte        // default: operands 1 and 2 for math.*, empty otherwise
	Connections int           // default 50
	Pipeline    int           // requests outstanding per connection, default 1
	Duration    time.Duration // default 10s
	// Progress, when set, is called about once a second with the operations
	// completed so far.
	Progress func(elapsed time.Duration, ops, errs uint64)
}

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	Addr        string  `json:"addr"`
	Method      string  `json:"method"`
	Connections int     `json:"connections"`
	Pipeline    int     `json:"pipeline"`
	DurationS   float64 `json:"duration_s"`
	Ops         uint64  `json:"ops"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Errors      uint64  `json:"errors"`
	P50us       float64 `json:"p50_us"`
	P90us       float64 `json:"p90_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
	MaxUs       float64 `json:"max_us"`
}

func (c *Config) defaults() error {
	if c.Method == "" {
		c.Method = "math.add"
	}
	if c.Payload == nil && strings.HasPrefix(c.Method, "math.") {
		c.Payload = calc.AppendOperands(nil, 1, 2)
	}
	if c.Connections == 0 {
		c.Connections = 50
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	switch {
	case c.Connections < 1 || c.Connections > 100000:
		return errors.New("loadgen: connections must be 1..100000")
	case c.Pipeline < 1 || c.Pipeline > 65536:
		return errors.New("loadgen: pipeline must be 1..65536")
	case c.Duration < 0:
		return errors.New("loadgen: negative duration")
	}
	return wire.CheckMethod(c.Method)
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Nanosecond), 3) // ns, 3 significant digits
}

// Run connects, drives the load for the configured duration and reports.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	// Connect everybody before the clock starts.
	conns := make([]*worker, cfg.Connections)
	for i := range conns {
		w, err := dial(ctx, cfg, i)
		if err != nil {
			for _, w := range conns[:i] {
				w.conn.Close()
			}
			return Result{}, err
		}
		conns[i] = w
	}
	var ops, errs atomic.Uint64
	start := time.Now()
	stop := start.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, stop)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(runCtx, &ops, &errs)
		}()
	}
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case now := <-t.C:
					cfg.Progress(now.Sub(start), ops.Load(), errs.Load())
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() == nil && elapsed > cfg.Duration {
		elapsed = cfg.Duration // the drain after the deadline is not part of the run
	}
	h := newHistogram()
	var firstErr error
	for _, w := range conns {
		h.Merge(w.hist)
		if w.err != nil && firstErr == nil {
			firstErr = w.err
		}
	}
	res := Result{
		Addr: cfg.Addr, Method: cfg.Method, Connections: cfg.Connections, Pipeline: cfg.Pipeline,
		DurationS: elapsed.Seconds(), Ops: ops.Load(), Errors: errs.Load(),
		P50us: us(h.ValueAtQuantile(50)), P90us: us(h.ValueAtQuantile(90)), P99us: us(h.ValueAtQuantile(99)),
		P999us: us(h.ValueAtQuantile(99.9)), MaxUs: us(h.Max()),
	}
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	}
	if firstErr != nil && res.Ops == 0 {
		return res, firstErr
	}
	return res, nil
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// worker drives one connection.
type worker struct {
	cfg  Config
	conn net.Conn
	rd   *wire.Reader
	hist *hdrhistogram.Histogram
	sent []int64 // unix ns when the request in each slot went out
	out  []byte
	err  error
}

func dial(ctx context.Context, cfg Config, i int) (*worker, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	_, rd, err := client.Handshake(ctx, conn, &client.Options{Name: fmt.Sprintf("bench-%d", i)})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	return &worker{cfg: cfg, conn: conn, rd: rd, hist: newHistogram(), sent: make([]int64, cfg.Pipeline)}, nil
}

// run keeps Pipeline requests outstanding until ctx ends, then collects the
// answers still due and says GOODBYE. The id of a request is its slot + 1.
func (w *worker) run(ctx context.Context, ops, errs *atomic.Uint64) {
	defer w.conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = w.conn.SetReadDeadline(time.Now().Add(2 * time.Second)) })
	defer stop()
	now := time.Now().UnixNano()
	for slot := range w.sent {
		w.send(slot, now)
	}
	outstanding := len(w.sent)
	bye := false // the server said GOODBYE: send nothing more
	if w.flush() != nil {
		return
	}
	for outstanding > 0 {
		f, err := w.rd.ReadFrame()
		if err != nil {
			if ctx.Err() == nil {
				w.err = err
			}
			return
		}
		now := time.Now().UnixNano()
		switch f.Type {
		case wire.TypeResponse, wire.TypeError:
			slot := int(f.ID) - 1
			if slot < 0 || slot >= len(w.sent) {
				w.err = fmt.Errorf("answer to unknown id %d", f.ID)
				return
			}
			outstanding--
			if bye || ctx.Err() != nil {
				break // the run is over: collect, do not count
			}
			_ = w.hist.RecordValue(now - w.sent[slot]) // values past a minute are clipped; none are expected
			ops.Add(1)
			if f.Type == wire.TypeError {
				errs.Add(1)
			}
			w.send(slot, now)
			outstanding++
		case wire.TypePing:
			w.out = wire.AppendFrame(w.out, wire.TypePong, 0, f.ID, f.Body)
		case wire.TypeGoodbye:
			bye = true
		}
		if !w.rd.HasFrame() && w.flush() != nil {
			return
		}
	}
	w.out = wire.AppendGoodbye(w.out[:0], "bench done")
	_ = w.flush()
}

func (w *worker) send(slot int, now int64) {
	w.sent[slot] = now
	w.out = wire.AppendRequest(w.out, uint32(slot+1), w.cfg.Method, w.cfg.Payload)
}

func (w *worker) flush() error {
	if len(w.out) == 0 {
		return nil
	}
	_, err := w.conn.Write(w.out)
	w.out = w.out[:0]
	if err != nil {
		w.err = err
	}
	return err
}
