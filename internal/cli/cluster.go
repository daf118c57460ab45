package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/internal/upstream"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// parseServices parses --services: "all", "none", or a comma-separated list
// of the services this binary ships.
func parseServices(list string) (map[string]bool, error) {
	sel, err := catalog.Parse(list)
	if err != nil {
		return nil, usageError{"--services: " + err.Error()}
	}
	return sel, nil
}

// natsFlags are the NATS settings shared by serve and worker.
type natsFlags struct {
	url, prefix, creds *string
}

func addNATSFlags(fs *pflag.FlagSet, defaultURL string) natsFlags {
	return natsFlags{
		url:    fs.String("nats", defaultURL, "NATS server `URL`s, comma-separated (user, password or token may be in the URL)"),
		prefix: fs.String("nats-prefix", backplane.DefaultPrefix, "NATS subject `prefix`: methods on PREFIX.svc.METHOD, gateway queries on PREFIX.admin.*"),
		creds:  fs.String("nats-creds", "", "NATS credentials `file` (.creds)"),
	}
}

func (f natsFlags) connect(name string, log *slog.Logger) (*nats.Conn, error) {
	if err := backplane.CheckPrefix(*f.prefix); err != nil {
		return nil, usageError{"--nats-prefix: " + err.Error()}
	}
	return backplane.Connect(backplane.ConnectOptions{URL: *f.url, Name: name, Creds: *f.creds, Log: log})
}

// defaultName names this process in the cluster view: host and pid.
func defaultName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "nexo"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

func (m *Main) worker(fs *pflag.FlagSet) runFunc {
	fs.String("config", "", "TOML `file` of settings named like these flags; flags and NEXO_* win over it")
	nf := addNATSFlags(fs, nats.DefaultURL)
	services := fs.String("services", "all", "services to serve: all, none, or a comma-separated list of math, sys (none when --upstream is given)")
	upf := addUpstreamFlags(fs)
	maxFrame := fs.Int("max-frame", wire.DefaultMaxFrame, "largest answer an upstream may give, in `bytes` (the gateways' --max-frame)")
	healthAddr := fs.String("health-addr", "", "serve /livez, /readyz (ready while connected to NATS) and /metrics on this `address`; empty turns it off")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long requests in hand may take to finish")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	check := fs.Bool("check", false, "check the settings (flags, NEXO_*, --config file) and exit: 0 when they are valid")
	otlp := addTracingFlag(fs)
	return func(ctx context.Context, args []string) error {
		log, _, err := m.daemonLog("worker", args, logLevel)
		if err != nil {
			return err
		}
		if len(upf.urls) > 0 && !fs.Changed("services") {
			*services = "none"
		}
		sel, err := parseServices(*services)
		if err != nil {
			return err
		}
		if len(sel) == 0 && len(m.Methods) == 0 && len(upf.urls) == 0 {
			return usageError{"--services none: a worker needs at least one service, or an --upstream"}
		}
		if *check {
			if err := backplane.CheckPrefix(*nf.prefix); err != nil {
				return usageError{"--nats-prefix: " + err.Error()}
			}
			if err := tracing.CheckEndpoint(*otlp); err != nil {
				return usageError{err.Error()}
			}
			fmt.Fprintln(m.Stdout, "nexo worker: the settings are valid")
			return nil
		}
		tracer, stopTracing, err := startTracing(ctx, *otlp, "nexo worker", log)
		if err != nil {
			return err
		}
		defer stopTracing()
		reg := service.NewRegistry()
		if err := catalog.Register(reg, catalog.Options{Select: sel, Extra: m.Methods}); err != nil {
			return err
		}
		var names []string
		for _, m := range m.Methods {
			names = append(names, m.Name)
		}
		for _, n := range catalog.Names() {
			if sel[n] {
				names = append(names, n)
			}
		}
		name := defaultName()
		ws := newWorkers(func() (*nats.Conn, error) { return nf.connect("nexo-worker "+name, log) },
			backplane.WorkerOptions{Prefix: *nf.prefix, Version: Version, Log: log, Tracer: tracer}, log)
		defer ws.close()
		if len(names) > 0 {
			if err := ws.start(nil, reg, map[string]string{"services": strings.Join(names, ","), "host": name}); err != nil {
				return err
			}
		}
		ups, err := upf.dial(*maxFrame, log, ws.changed(name), ws.added(name))
		if err != nil {
			return err
		}
		defer closeAll(ups)
		log.Info("nexo worker started", slog.String("version", Version), slog.String("nats", *nf.url),
			slog.String("prefix", *nf.prefix), slog.Any("methods", ws.methods()))

		var hs *http.Server
		if *healthAddr != "" {
			ln, err := net.Listen("tcp", *healthAddr)
			if err != nil {
				return fmt.Errorf("health address: %w", err)
			}
			metrics := prometheus.NewRegistry()
			metrics.MustRegister(upstream.Collector(ups), ws, collectors.NewGoCollector(),
				collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			mux := http.NewServeMux()
			mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
			mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
				if !ws.ready() {
					http.Error(w, "not connected to NATS, or draining\n", http.StatusServiceUnavailable)
					return
				}
				_, _ = w.Write([]byte("ready\n"))
			})
			mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
			hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			log.Info("listening", slog.String("door", "health"), slog.String("addr", ln.Addr().String()))
			if m.Listening != nil {
				m.Listening("health", ln.Addr().String())
			}
			go func() { _ = hs.Serve(ln) }()
		}
		if m.Listening != nil {
			m.Listening("worker", *nf.url)
		}
		notifySystemd(log, "READY=1")
		<-ctx.Done()
		log.Info("signal received; draining", slog.Duration("drain_timeout", *drain))
		notifySystemd(log, "STOPPING=1")
		sctx, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		err = ws.stop(sctx)
		if hs != nil {
			_ = hs.Shutdown(sctx)
		}
		if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			log.Warn("drain incomplete", slog.Any("err", err))
		}
		log.Info("nexo worker stopped")
		return nil
	}
}

// workers are a worker process's NATS micro services: one for its own
// methods, and one per upstream, each on a connection of its own (a
// Worker's Stop drains its connection). When an upstream's methods
// change, a new service starts before the old one drains, so that no
// request finds nobody.
type workers struct {
	connect func() (*nats.Conn, error)
	o       backplane.WorkerOptions
	log     *slog.Logger

	mu       sync.Mutex
	own      *backplane.Worker
	up       map[*upstream.Upstream]*backplane.Worker
	draining map[*backplane.Worker]bool // replaced or stopping, still answering what they hold
	retired  map[string]served          // by method: what the workers that have stopped served
	stopping bool                       // stop has begun: not ready
}

// newWorkers returns a worker's services, none started yet: each connects
// to NATS with connect and serves with o.
func newWorkers(connect func() (*nats.Conn, error), o backplane.WorkerOptions, log *slog.Logger) *workers {
	return &workers{connect: connect, o: o, log: log,
		up: map[*upstream.Upstream]*backplane.Worker{}, draining: map[*backplane.Worker]bool{}, retired: map[string]served{}}
}

// served is what workers served of a method (backplane.Worker.Served).
type served struct{ requests, errors uint64 }

var (
	workerRequestsDesc = prometheus.NewDesc("nexo_worker_requests_total",
		"Requests the worker served, by method (each request of a batch counted).", []string{"method"}, nil)
	workerErrorsDesc = prometheus.NewDesc("nexo_worker_errors_total",
		"Requests the worker answered with an error, by method.", []string{"method"}, nil)
	workerNATSDesc = prometheus.NewDesc("nexo_nats_connected",
		"1 while every service of the worker is connected to NATS.", nil, nil)
)

// Describe implements prometheus.Collector: the worker's own metrics, on
// its --health-addr.
func (ws *workers) Describe(ch chan<- *prometheus.Desc) {
	ch <- workerRequestsDesc
	ch <- workerErrorsDesc
	ch <- workerNATSDesc
}

// Collect implements prometheus.Collector. A method's counts are those of
// every service that has served it, the replaced and stopped ones
// included, so that they never go down when an upstream's methods change
// or while the worker drains.
func (ws *workers) Collect(ch chan<- prometheus.Metric) {
	ws.mu.Lock()
	up := 0.0
	if ws.connected() {
		up = 1
	}
	byMethod := maps.Clone(ws.retired)
	for _, w := range ws.serving() {
		w.Served(into(byMethod))
	}
	ws.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(workerNATSDesc, prometheus.GaugeValue, up)
	for method, n := range byMethod {
		ch <- prometheus.MustNewConstMetric(workerRequestsDesc, prometheus.CounterValue, float64(n.requests), method)
		ch <- prometheus.MustNewConstMetric(workerErrorsDesc, prometheus.CounterValue, float64(n.errors), method)
	}
}

// start serves reg's methods as a new micro service, in place of u's
// (u nil: the process's own methods).
func (ws *workers) start(u *upstream.Upstream, reg *service.Registry, meta map[string]string) error {
	nc, err := ws.connect()
	if err != nil {
		return err
	}
	o := ws.o
	o.Metadata = meta
	if u != nil {
		o.Upstream = u.Health
	}
	w, err := backplane.NewWorker(nc, reg, o)
	if err != nil {
		nc.Close()
		return err
	}
	ws.mu.Lock()
	old := ws.own
	if u == nil {
		ws.own = w
	} else {
		old = ws.up[u]
		ws.up[u] = w
	}
	if old != nil {
		ws.draining[old] = true
	}
	ws.mu.Unlock()
	if old != nil {
		gone := lost(old, reg)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), service.DefaultTimeout)
			defer cancel()
			_ = old.Stop(ctx)
			ws.retire(old)
			if len(gone) > 0 {
				w.Gone(gone)
			}
		}()
	}
	return nil
}

// retire keeps what a replaced or stopped worker served, once it has
// stopped. Stop returns at its context's end without waiting for the
// handlers it cancelled: errors they answer later are not counted.
func (ws *workers) retire(w *backplane.Worker) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.draining, w)
	w.Served(into(ws.retired))
}

// into returns a backplane.Worker.Served callback that adds to m.
func into(m map[string]served) func(method string, requests, errors uint64) {
	return func(method string, requests, errors uint64) {
		n := m[method]
		m[method] = served{n.requests + requests, n.errors + errors}
	}
}

// lost lists the methods old served that reg does not.
func lost(old *backplane.Worker, reg *service.Registry) []string {
	var gone []string
	for _, e := range old.Info().Endpoints {
		if name := e.Metadata["method"]; reg.Lookup([]byte(name)) == nil {
			gone = append(gone, name)
		}
	}
	return gone
}

// added serves a new upstream's methods.
func (ws *workers) added(host string) func(*upstream.Upstream) error {
	return func(u *upstream.Upstream) error { return ws.serveUpstream(host, u, u.Methods()) }
}

// changed serves an upstream's methods anew.
func (ws *workers) changed(host string) func(*upstream.Upstream, []service.Method) {
	return func(u *upstream.Upstream, ms []service.Method) {
		if err := ws.serveUpstream(host, u, ms); err != nil {
			ws.log.Warn("cannot serve an upstream's new methods; the old ones stay", slog.String("upstream", u.URL()), slog.Any("err", err))
		}
	}
}

func (ws *workers) serveUpstream(host string, u *upstream.Upstream, ms []service.Method) error {
	reg := service.NewRegistry()
	if err := reg.Register(ms...); err != nil {
		return fmt.Errorf("--upstream %s: %w", u.URL(), err)
	}
	return ws.start(u, reg, map[string]string{"services": strings.Join(reg.Names(true), ","), "host": host, "upstream": u.URL()})
}

// methods lists every method served.
func (ws *workers) methods() []string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var out []string
	for _, w := range ws.all() {
		for _, e := range w.Info().Endpoints {
			out = append(out, e.Metadata["method"])
		}
	}
	return out
}

// all lists the services now; mu is held.
func (ws *workers) all() []*backplane.Worker {
	var out []*backplane.Worker
	if ws.own != nil {
		out = append(out, ws.own)
	}
	for _, w := range ws.up {
		out = append(out, w)
	}
	return out
}

// serving returns every service that may still answer: the current
// ones and those draining; mu is held.
func (ws *workers) serving() []*backplane.Worker {
	all := ws.all()
	for w := range ws.draining {
		all = append(all, w)
	}
	return all
}

// connected reports whether there are services, draining ones included,
// and every one is connected to NATS; mu is held.
func (ws *workers) connected() bool {
	all := ws.serving()
	for _, w := range all {
		if !w.Connected() {
			return false
		}
	}
	return len(all) > 0
}

// ready reports whether the worker serves: it is not stopping, and every
// service is connected to NATS.
func (ws *workers) ready() bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return !ws.stopping && ws.connected()
}

// stop drains every service at once.
func (ws *workers) stop(ctx context.Context) error {
	ws.mu.Lock()
	all := ws.all()
	ws.own, ws.up = nil, map[*upstream.Upstream]*backplane.Worker{}
	for _, w := range all {
		ws.draining[w] = true
	}
	ws.stopping = true
	ws.mu.Unlock()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, w := range all {
		wg.Go(func() {
			errs[i] = w.Stop(ctx)
			ws.retire(w)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close stops what is left, at once (an error before the signal).
func (ws *workers) close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = ws.stop(ctx)
}
