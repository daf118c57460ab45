package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/internal/loadgen"
)

// defaultDoorAddr is where nexo bench finds each door when --addr is not
// given: serve's defaults, and Redis's.
var defaultDoorAddr = map[string]string{
	loadgen.DoorNative: "127.0.0.1:7070",
	loadgen.DoorLegacy: "127.0.0.1:7071",
	loadgen.DoorWeb:    "127.0.0.1:8080",
	loadgen.DoorHTTP:   "127.0.0.1:8080",
	loadgen.DoorRedis:  "127.0.0.1:6379",
}

func (m *Main) bench(fs *pflag.FlagSet) runFunc {
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` of the door (by default the door's own: 7071 legacy, 8080 web and http, 6379 redis)")
	door := fs.String("door", loadgen.DoorNative, "door to drive: native, legacy (math only, struct packets), web (JSON-RPC over the WebSocket /ws), http (JSON-RPC over POST /rpc, kept alive, pipelined with -p), or redis (PINGs to a redis-server, for comparison)")
	rate := fs.Float64P("r", "r", 0, "target `rate` in requests per second over all connections, with latency corrected for coordinated omission; 0: closed loop")
	hgrm := fs.String("hgrm", "", "write the latency percentile distribution to this `file` (HdrHistogram .hgrm, µs)")
	plot := fs.String("plot", "", "write a latency-by-percentile chart to this SVG `file`")
	conns := fs.IntP("c", "c", 50, "connections")
	pipeline := fs.IntP("p", "p", 1, "requests outstanding per connection")
	duration := fs.DurationP("d", "d", 10*time.Second, "how long to run")
	method := fs.String("method", "math.add", "method to call (math.* get operands 1 and 2; others --params, or an empty payload)")
	params := fs.String("params", "", "a JSON method's params, in JSON (its native payload; JSON-RPC params on --door web)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	idle := fs.Bool("idle", false, "capacity test: open -c (or --connections) idle clients that only answer PINGs, hold them for -d, then close them")
	connections := fs.Int("connections", 0, "same as -c; reads better with --idle")
	sources := fs.Int("sources", 1, "with --idle, connect from `N` loopback addresses 127.0.0.1..127.0.0.N (each gives ~28k ports)")
	dialRate := fs.Int("dial-rate", 5000, "with --idle, new connections per second")
	allowErrors := fs.Bool("allow-errors", false, "exit 0 even when requests failed or idle connections were refused or dropped")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("bench takes no arguments, got %q", args)}
		}
		if *connections > 0 {
			*conns = *connections
		}
		switch {
		case !slices.Contains([]string{loadgen.DoorNative, loadgen.DoorLegacy, loadgen.DoorWeb, loadgen.DoorHTTP, loadgen.DoorRedis}, *door):
			return usageError{fmt.Sprintf("bench: --door %q: want native, legacy, web, http or redis", *door)}
		case *conns < 1 || fs.Changed("connections") && *connections < 1:
			return usageError{"bench: -c (--connections) must be at least 1"}
		case *pipeline < 1:
			return usageError{"bench: -p must be at least 1"}
		case *duration <= 0:
			return usageError{"bench: -d must be a positive duration"}
		case *rate < 0:
			return usageError{"bench: -r must not be negative"}
		}
		*addr = benchAddr(*door, *addr, fs.Changed("addr"))
		if err := checkAddr("--addr", *addr); err != nil {
			return err
		}
		if *idle {
			return m.benchIdle(ctx, *addr, *conns, *sources, *dialRate, *duration, *asJSON, *allowErrors)
		}
		if *params != "" && !json.Valid([]byte(*params)) {
			return usageError{"bench: --params is not JSON"}
		}
		cfg := loadgen.Config{Addr: *addr, Door: *door, Rate: *rate, Method: *method, Params: *params, Connections: *conns, Pipeline: *pipeline, Duration: *duration}
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
		if err := writeReports(res, *hgrm, *plot); err != nil {
			return err
		}
		if *asJSON {
			if err := json.NewEncoder(m.Stdout).Encode(res); err != nil {
				return err
			}
			return m.benchVerdict(res, *allowErrors)
		}
		load := "closed loop"
		if res.Rate > 0 {
			load = fmt.Sprintf("target %.0f ops/s, latency from the scheduled send (coordinated omission corrected)", res.Rate)
		}
		fmt.Fprintf(m.Stdout, "nexo bench: %s %s door, %s, %d connections x %d pipelined, %.1fs, %s\n",
			res.Addr, res.Door, res.Method, res.Connections, res.Pipeline, res.DurationS, load)
		fmt.Fprintf(m.Stdout, "  on %s: %d CPUs, GOMAXPROCS %d, %s, started %s\n",
			res.Host, res.NumCPU, res.GOMAXPROCS, res.GoVersion, res.Start.UTC().Format(time.RFC3339))
		fmt.Fprintf(m.Stdout, "  ops      %d (%d errors)\n", res.Ops, res.Errors)
		fmt.Fprintf(m.Stdout, "  ops/s    %.0f\n", res.OpsPerSec)
		fmt.Fprintf(m.Stdout, "  latency  p50 %.1fµs  p90 %.1fµs  p99 %.1fµs  p99.9 %.1fµs  max %.1fµs\n",
			res.P50us, res.P90us, res.P99us, res.P999us, res.MaxUs)
		return m.benchVerdict(res, *allowErrors)
	}
}

// benchVerdict warns when a paced run missed its rate (its latencies then
// measure a queue as much as the server), and fails a run whose requests
// failed, unless allowed.
func (m *Main) benchVerdict(res loadgen.Result, allowErrors bool) error {
	if missedRate(res) {
		fmt.Fprintf(m.Stderr, "nexo bench: warning: the target rate was missed: %.0f of %.0f ops/s (%.0f%%); the latencies include the backlog\n",
			res.OpsPerSec, res.Rate, 100*res.OpsPerSec/res.Rate)
	}
	if res.Errors > 0 && !allowErrors {
		return fmt.Errorf("bench: %d of %d requests failed (--allow-errors to exit 0 anyway)", res.Errors, res.Ops)
	}
	return nil
}

// missedRate reports whether a paced run missed its rate: it answered
// less than 95% of it, or it fell behind its schedule by more than 1% of
// the requests due, beyond those a healthy run can still have
// outstanding at its end (each connection's pipeline, and one more for
// the schedules' stagger). A server 2.5% short of the rate has a backlog
// of a quarter of a second after 10 s, which its latencies then measure.
func missedRate(res loadgen.Result) bool {
	if res.Rate <= 0 {
		return false
	}
	due := res.Rate * res.DurationS
	behind := due - float64(res.Ops)
	return res.OpsPerSec < 0.95*res.Rate || (behind > 0.01*due && behind > float64(res.Connections*(res.Pipeline+1)))
}

// writeReports writes the latency distribution and chart, when asked for.
func writeReports(res loadgen.Result, hgrm, plot string) error {
	write := func(path string, f func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	title := fmt.Sprintf("nexo bench %s %s door: %d×%d, %.0f ops/s, p99 %.0f µs", res.Method, res.Door, res.Connections, res.Pipeline, res.OpsPerSec, res.P99us)
	return errors.Join(
		write(hgrm, func(w io.Writer) error { return loadgen.WriteHgrm(w, res.Histogram()) }),
		write(plot, func(w io.Writer) error { return loadgen.WritePlotSVG(w, title, res.Histogram()) }),
	)
}

// benchIdle runs the capacity test: many idle clients held for a while.
func (m *Main) benchIdle(ctx context.Context, addr string, conns, sources, rate int, hold time.Duration, asJSON, allowErrors bool) error {
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
	verdict := func() error {
		if (res.Failed > 0 || res.Dropped > 0) && !allowErrors {
			return fmt.Errorf("bench --idle: %d of %d connections failed and %d were dropped (--allow-errors to exit 0 anyway)", res.Failed, res.Connections, res.Dropped)
		}
		return nil
	}
	if asJSON {
		if err := json.NewEncoder(m.Stdout).Encode(res); err != nil {
			return err
		}
		return verdict()
	}
	from := "1 source address"
	if res.Sources > 1 {
		from = fmt.Sprintf("%d source addresses", res.Sources)
	}
	fmt.Fprintf(m.Stdout, "nexo bench --idle: %s, %d connections from %s\n", res.Addr, res.Connections, from)
	fmt.Fprintf(m.Stdout, "  up       %d in %.1fs (%d failed)\n", res.Up, res.ConnectS, res.Failed)
	fmt.Fprintf(m.Stdout, "  held     %.1fs: %d PINGs answered, %d dropped by the server\n", res.HoldS, res.Pings, res.Dropped)
	if res.FirstError != "" {
		fmt.Fprintf(m.Stdout, "  first error: %s\n", res.FirstError)
	}
	return verdict()
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

// benchAddr is the address bench drives: the one given, or the door's own
// default (7071 legacy, 8080 web, 6379 redis), not the native door's.
func benchAddr(door, addr string, given bool) string {
	if d, ok := defaultDoorAddr[door]; ok && !given {
		return d
	}
	return addr
}
