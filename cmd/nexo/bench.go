package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	if err := m.parse(fs, args); err != nil {
		return err
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

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
