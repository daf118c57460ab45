package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/nexo-project/nexo/internal/loadgen"
)

func (m *Main) bench(ctx context.Context, args []string) error {
	fs := m.flags("bench", "")
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` (native door)")
	conns := fs.Int("c", 50, "connections")
	pipeline := fs.Int("p", 1, "requests outstanding per connection")
	duration := fs.Duration("d", 10*time.Second, "how long to run")
	method := fs.String("method", "math.add", "method to call (math.* get operands 1 and 2; others an empty payload)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	idle := fs.Bool("idle", false, "capacity test: open -c (or --connections) idle clients that only answer PINGs, hold them for -d, then close them")
	connections := fs.Int("connections", 0, "same as -c; reads better with --idle")
	sources := fs.Int("sources", 1, "with --idle, connect from `N` loopback addresses 127.0.0.1..127.0.0.N (each gives ~28k ports)")
	dialRate := fs.Int("dial-rate", 5000, "with --idle, new connections per second")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if *connections > 0 {
		*conns = *connections
	}
	if *idle {
		return m.benchIdle(ctx, *addr, *conns, *sources, *dialRate, *duration, *asJSON)
	}
	cfg := loadgen.Config{Addr: *addr, Method: *method, Connections: *conns, Pipeline: *pipeline, Duration: *duration}
	live := isTerminal(m.Stdout) && !*asJSON
	if live {
		cfg.Progress = func(elapsed time.Duration, ops, errs uint64) {
			fmt.Fprintf(m.Stdout, "\r%5.0fs  %12d ops  %10.0f ops/s  %d errors ", elapsed.Seconds(), ops, float64(ops)/elapsed.Seconds(), errs)
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if live {
		fmt.Fprint(m.Stdout, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(m.Stdout)
		return enc.Encode(res)
	}
	fmt.Fprintf(m.Stdout, "nexo bench: %s %s, %d connections x %d pipelined, %.1fs\n",
		res.Addr, res.Method, res.Connections, res.Pipeline, res.DurationS)
	fmt.Fprintf(m.Stdout, "  ops      %d (%d errors)\n", res.Ops, res.Errors)
	fmt.Fprintf(m.Stdout, "  ops/s    %.0f\n", res.OpsPerSec)
	fmt.Fprintf(m.Stdout, "  latency  p50 %.1fµs  p90 %.1fµs  p99 %.1fµs  p99.9 %.1fµs  max %.1fµs\n",
		res.P50us, res.P90us, res.P99us, res.P999us, res.MaxUs)
	return nil
}

// benchIdle runs the capacity test: many idle clients held for a while.
func (m *Main) benchIdle(ctx context.Context, addr string, conns, sources, rate int, hold time.Duration, asJSON bool) error {
	if sources < 1 || sources > 254 {
		return usageError{"--sources must be 1..254"}
	}
	cfg := loadgen.IdleConfig{Addr: addr, Connections: conns, Hold: hold, DialRate: rate}
	if sources > 1 {
		for i := 1; i <= sources; i++ {
			cfg.Sources = append(cfg.Sources, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
		}
	}
	if !asJSON {
		cfg.Progress = func(phase string, up, failed, dropped int) {
			fmt.Fprintf(m.Stderr, "%s: %d up, %d failed, %d dropped by the server\n", phase, up, failed, dropped)
		}
	}
	res, err := loadgen.Idle(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(m.Stdout).Encode(res)
	}
	fmt.Fprintf(m.Stdout, "nexo bench --idle: %s, %d connections from %d source addresses\n", res.Addr, res.Connections, max(1, res.Sources))
	fmt.Fprintf(m.Stdout, "  up       %d in %.1fs (%d failed)\n", res.Up, res.ConnectS, res.Failed)
	fmt.Fprintf(m.Stdout, "  held     %.1fs: %d PINGs answered, %d dropped by the server\n", res.HoldS, res.Pings, res.Dropped)
	if res.FirstError != "" {
		fmt.Fprintf(m.Stdout, "  first error: %s\n", res.FirstError)
	}
	return nil
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
