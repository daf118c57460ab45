// Package loadgen is the load generator behind `nexo bench`.
//
// Closed loop (the default): each connection keeps a fixed number of
// requests outstanding; for every answer it sends a new request, so the
// offered load follows the server's pace. Answers are read in bursts and the
// replacement requests of a burst go out in one write, as a pipelining
// client would do.
//
// At a target rate (Config.Rate), each connection sends on a fixed schedule
// instead, with up to Pipeline requests outstanding, and a request's latency
// counts from the moment the schedule said to send it. A server that falls
// behind therefore shows in the latencies, instead of slowing the load
// generator down and hiding its own stall (coordinated omission).
//
// Latencies go into an HDR histogram. The native, legacy and web doors can
// be driven.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/wire"
)

// Config describes a run.
type Config struct {
	Addr    string  // server address
	Door    string  // DoorNative (default), DoorLegacy, DoorWeb, DoorHTTP or DoorRedis
	Rate    float64 // target requests per second over all connections; 0: closed loop
	Method  string  // default "math.add"
	Payload []byte  // default: operands 1 and 2 for math.*, Params for others, empty otherwise
	// Params are a JSON method's params, in JSON: its native payload, and
	// its JSON-RPC params on the web door.
	Params      string
	Connections int           // default 50
	Pipeline    int           // requests outstanding per connection, default 1
	Duration    time.Duration // default 10s
	// Progress, when set, is called about once a second with the operations
	// completed so far.
	Progress func(elapsed time.Duration, ops, errs uint64)
}

// Result is what a run was and what it measured. Latencies are in
// microseconds.
type Result struct {
	// The run's configuration and where it ran.
	Addr        string    `json:"addr"`
	Door        string    `json:"door"`
	Method      string    `json:"method"`
	Connections int       `json:"connections"`
	Pipeline    int       `json:"pipeline"`
	Rate        float64   `json:"rate,omitempty"`         // target ops/s; 0: closed loop
	COCorrected bool      `json:"co_corrected,omitempty"` // latencies count from the scheduled send time
	Start       time.Time `json:"start"`
	Host        string    `json:"host"`
	NumCPU      int       `json:"num_cpu"`
	GOMAXPROCS  int       `json:"gomaxprocs"`
	GoVersion   string    `json:"go_version"`

	// What it measured.
	DurationS float64 `json:"duration_s"`
	Ops       uint64  `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Errors    uint64  `json:"errors"`
	P50us     float64 `json:"p50_us"`
	P90us     float64 `json:"p90_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p999_us"`
	MaxUs     float64 `json:"max_us"`

	hist *hdrhistogram.Histogram
}

// Histogram returns the run's latency histogram, in nanoseconds.
func (r Result) Histogram() *hdrhistogram.Histogram { return r.hist }

func (c *Config) defaults() error {
	if c.Door == "" {
		c.Door = DoorNative
	}
	if c.Door != DoorNative && c.Door != DoorLegacy && c.Door != DoorWeb && c.Door != DoorHTTP && c.Door != DoorRedis {
		return fmt.Errorf("loadgen: door %q: want native, legacy, web, http or redis", c.Door)
	}
	if c.Rate < 0 {
		return errors.New("loadgen: negative rate")
	}
	if c.Method == "" {
		c.Method = "math.add"
	}
	if c.Payload == nil && c.Params != "" {
		c.Payload = []byte(c.Params)
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
		c, err := dialCodec(ctx, cfg, i)
		if err != nil {
			for _, w := range conns[:i] {
				w.c.close()
			}
			return Result{}, fmt.Errorf("connection %d: %w", i, err)
		}
		conns[i] = &worker{cfg: cfg, c: c, hist: newHistogram(), sent: make([]int64, cfg.Pipeline)}
	}
	var ops, errs atomic.Uint64
	start := time.Now()
	stop := start.Add(cfg.Duration)
	runCtx, cancel := context.WithDeadline(ctx, stop)
	defer cancel()
	var wg sync.WaitGroup
	for i, w := range conns {
		wg.Go(func() {
			if cfg.Rate > 0 {
				// Stagger the connections' schedules over one interval.
				interval := time.Duration(float64(cfg.Connections) / cfg.Rate * float64(time.Second))
				w.paced(runCtx, start.Add(interval*time.Duration(i)/time.Duration(cfg.Connections)), interval, &ops, &errs)
			} else {
				w.run(runCtx, &ops, &errs)
			}
		})
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
	host, _ := os.Hostname()
	res := Result{
		Addr: cfg.Addr, Door: cfg.Door, Method: cfg.Method, Connections: cfg.Connections, Pipeline: cfg.Pipeline,
		Rate: cfg.Rate, COCorrected: cfg.Rate > 0, Start: start, Host: host,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		DurationS: elapsed.Seconds(), Ops: ops.Load(), Errors: errs.Load(),
		P50us: us(h.ValueAtQuantile(50)), P90us: us(h.ValueAtQuantile(90)), P99us: us(h.ValueAtQuantile(99)),
		P999us: us(h.ValueAtQuantile(99.9)), MaxUs: us(h.Max()), hist: h,
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
	c    codec
	hist *hdrhistogram.Histogram
	sent []int64 // unix ns when the request in each slot went out (or was due)
	out  []byte
	err  error
}

// run keeps Pipeline requests outstanding until ctx ends, then collects the
// answers still due and says GOODBYE.
func (w *worker) run(ctx context.Context, ops, errs *atomic.Uint64) {
	defer w.c.close()
	stop := context.AfterFunc(ctx, func() { w.c.endReads(time.Now().Add(2 * time.Second)) })
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
		slot, failed, goodbye, err := w.c.answer(&w.out)
		if err != nil {
			if ctx.Err() == nil {
				w.err = err
			}
			return
		}
		bye = bye || goodbye
		if slot >= 0 {
			if slot >= len(w.sent) {
				w.err = fmt.Errorf("answer to unknown id %d", slot+1)
				return
			}
			outstanding--
			if !bye && ctx.Err() == nil { // after the run: collect, do not count
				now := time.Now().UnixNano()
				_ = w.hist.RecordValue(now - w.sent[slot]) // values past a minute are clipped; none are expected
				ops.Add(1)
				if failed {
					errs.Add(1)
				}
				w.send(slot, now)
				outstanding++
			}
		}
		if !w.c.more() && w.flush() != nil {
			return
		}
	}
	w.out = w.c.goodbye(w.out[:0])
	_ = w.flush()
}

// paced sends on a schedule, one request every interval from first, with
// up to Pipeline outstanding; latencies count from the scheduled time. A
// reader goroutine takes the answers and frees their slots.
func (w *worker) paced(ctx context.Context, first time.Time, interval time.Duration, ops, errs *atomic.Uint64) {
	defer w.c.close()
	free := make(chan int, len(w.sent))
	for slot := range w.sent {
		free <- slot
	}
	var mu sync.Mutex // the writer: the sender's requests and the reader's PONGs
	readerDone := make(chan struct{})
	outstanding := atomic.Int64{}
	go func() {
		defer close(readerDone)
		var pong []byte
		for {
			slot, failed, _, err := w.c.answer(&pong)
			if err != nil {
				if ctx.Err() == nil {
					w.err = err
				}
				return
			}
			if len(pong) > 0 {
				mu.Lock()
				err := w.c.write(pong)
				mu.Unlock()
				pong = pong[:0]
				if err != nil {
					return
				}
			}
			if slot < 0 || slot >= len(w.sent) {
				continue
			}
			outstanding.Add(-1)
			if ctx.Err() == nil {
				_ = w.hist.RecordValue(time.Now().UnixNano() - atomic.LoadInt64(&w.sent[slot]))
				ops.Add(1)
				if failed {
					errs.Add(1)
				}
			}
			free <- slot
			if ctx.Err() != nil && outstanding.Load() == 0 {
				return
			}
		}
	}()
	due := first
	timer := time.NewTimer(time.Until(due))
	defer timer.Stop()
send:
	for {
		select {
		case <-ctx.Done():
			break send
		case <-timer.C:
		}
		// Send everything due now that has a free slot; a request that
		// waited for a slot keeps its scheduled time.
		mu.Lock()
		now := time.Now()
		for !due.After(now) {
			var slot int
			select {
			case slot = <-free:
			default:
				goto full
			}
			atomic.StoreInt64(&w.sent[slot], due.UnixNano())
			outstanding.Add(1)
			w.out = w.c.request(w.out, slot)
			due = due.Add(interval)
		}
	full:
		err := w.flush()
		mu.Unlock()
		if err != nil {
			break send
		}
		wait := time.Until(due)
		if wait <= 0 {
			// Behind schedule and every slot busy: wait for an answer.
			select {
			case slot := <-free:
				free <- slot
			case <-ctx.Done():
				break send
			}
			wait = 0
		}
		timer.Reset(wait)
	}
	w.c.endReads(time.Now().Add(2 * time.Second))
	<-readerDone
	mu.Lock()
	w.out = w.c.goodbye(w.out[:0])
	_ = w.flush()
	mu.Unlock()
}

func (w *worker) send(slot int, now int64) {
	w.sent[slot] = now
	w.out = w.c.request(w.out, slot)
}

func (w *worker) flush() error {
	if len(w.out) == 0 {
		return nil
	}
	err := w.c.write(w.out)
	w.out = w.out[:0]
	if err != nil {
		w.err = err
	}
	return err
}
