package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/admin"
	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/certs"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/internal/upstream"
	"github.com/nexo-project/nexo/internal/web"
	"github.com/nexo-project/nexo/service"
)

// serveSettings are serve's flags, parsed and checked.
type serveSettings struct {
	cfg                                     server.Config
	nativeAddr, legacyAddr, webAddr, admAdr string
	origins, hosts                          []string
	pprof, reuse                            bool
	tls                                     *tls.Config
	mtls                                    bool
	services                                map[string]bool
	servicesText                            string
	nats                                    natsFlags
	upstreams                               *upstreamFlags
	check                                   bool // --check: validate the settings and exit
	natsEmbedded                            string
	natsRetry                               time.Duration
	gatewayName                             string
	drain                                   time.Duration
	otlp                                    string // --otlp-endpoint (OTEL_* apply without it)
	log                                     *slog.Logger
	level                                   *slog.LevelVar
	fs                                      *pflag.FlagSet
}

// serve runs the server: parse the settings, build the server and its
// doors, listen, and run until a signal drains it.
func (m *Main) serve(fs *pflag.FlagSet) runFunc {
	settings := m.serveFlags(fs)
	return func(ctx context.Context, args []string) error {
		set, err := settings(args)
		if err != nil {
			return err
		}
		if set.check {
			if err := tracing.CheckEndpoint(set.otlp); err != nil {
				return usageError{err.Error()}
			}
			fmt.Fprintln(m.Stdout, "nexo serve: the settings are valid")
			return nil
		}
		tracer, stopTracing, err := startTracing(ctx, set.otlp, "nexo serve", set.log)
		if err != nil {
			return err
		}
		defer stopTracing()
		set.cfg.Tracer = tracer
		p, err := m.buildServe(set)
		if err != nil {
			return err
		}
		defer p.close()
		if err := p.listen(ctx, set); err != nil {
			return err
		}
		return m.runServe(ctx, set, p)
	}
}

// serveFlags defines serve's flags and returns what reads them, once
// parsed, into settings, checked.
func (m *Main) serveFlags(fs *pflag.FlagSet) func(args []string) (*serveSettings, error) {
	d := server.DefaultConfig()
	fs.String("config", "", "TOML `file` of settings named like these flags; flags and NEXO_* win over it")
	nativeAddr := fs.String("native-addr", "127.0.0.1:7070", "native protocol `address`; empty turns the door off")
	legacyAddr := fs.String("legacy-addr", "127.0.0.1:7071", "legacy (Python struct) protocol `address`; empty turns the door off")
	webAddr := fs.String("web-addr", "127.0.0.1:8080", "web door `address`: GUI, JSON-RPC over POST /rpc and WebSocket /ws; empty turns it off")
	adminAddr := fs.String("admin-addr", "127.0.0.1:8222", "admin `address`: /api, /metrics, /livez, /readyz; empty turns it off")
	adminToken := fs.String("admin-token", "", "admin `token`; when empty, loopback clients are admins (prefer --admin-token-file or NEXO_ADMIN_TOKEN)")
	adminTokenFile := fs.String("admin-token-file", "", "read the admin token from this `file`")
	wsOrigins := fs.String("ws-origins", "", "comma-separated foreign `origins` whose pages may call the web door (/ws, POST /rpc): https://app.example.com, or host patterns such as *.example.com; same-origin is always allowed")
	allowedHosts := fs.String("allowed-hosts", "", "comma-separated host `names` the web and admin doors answer to, beyond localhost and their IP addresses (others get 421: DNS rebinding)")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/ on the admin listener")
	core := fs.String("core", d.Core, "how plain-TCP native connections are served: loop (event loops, Linux) or goroutine (a goroutine per busy connection)")
	loopsN := fs.Int("loops", 0, "event loops for --core loop (0: one per core)")
	heartbeat := fs.Duration("heartbeat", d.Heartbeat, "PING `interval`; a client silent for 2 intervals plus a grace is closed")
	maxFrame := fs.Int("max-frame", d.MaxFrame, "largest frame length accepted, in `bytes`")
	maxConns := fs.Int("max-conns", d.MaxConns, "most open connections over all doors")
	maxConnsPerIP := fs.Int("max-conns-per-ip", d.MaxConnsPerIP, "most open connections from one remote address over all doors")
	maxInFlight := fs.Int("max-inflight", d.MaxInFlight, "most concurrent requests per connection")
	maxInFlightTotal := fs.Int("max-inflight-total", d.MaxInFlightTotal, "most concurrent non-inline requests over the whole server")
	maxInFlightBytes := fs.Int("max-inflight-bytes", d.MaxInFlightBytes, "most `bytes` the non-inline requests of one connection may hold (payloads, WebSocket messages); one request always runs alone")
	maxPending := fs.Int("max-pending", 0, "close a client whose unsent output passes this many `bytes` (0: 4 MiB or 2 max frames)")
	writeTimeout := fs.Duration("write-timeout", d.WriteTimeout, "close a client whose writes stall this long")
	handshake := fs.Duration("handshake-timeout", d.HandshakeTimeout, "how long a new native connection may take for TLS and HELLO")
	legacyIdle := fs.Duration("legacy-idle", d.LegacyIdleTimeout, "close a legacy connection silent this long")
	legacyAllow := fs.String("legacy-allow", "", "comma-separated `networks` (CIDR) the legacy door accepts; empty accepts all")
	tokens := fs.String("tokens", "", "comma-separated client `tokens`; when set, native and web clients must present one (prefer --token-file or NEXO_TOKENS)")
	tokenFile := fs.String("token-file", "", "read client tokens from this `file`, one per line (# comments)")
	authFailures := fs.Int("auth-failures", d.AuthFailures, "failed authentications an address may make per --auth-window, each slowed more; past them its tokens are checked once a second")
	authWindow := fs.Duration("auth-window", d.AuthWindow, "the window of --auth-failures")
	tlsCert := fs.String("tls-cert", "", "PEM certificate `file`: serve TLS on the native, web and admin doors")
	tlsKey := fs.String("tls-key", "", "PEM private key `file` of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA `file`: require client certificates it signed (mutual TLS)")
	services := fs.String("services", "all", "services to run in this process: all, none, or a comma-separated list of "+strings.Join(catalog.Names(), ", ")+"; with --nats the others go to workers")
	nf := addNATSFlags(fs, "")
	ups := addUpstreamFlags(fs)
	natsEmbedded := fs.String("nats-embedded", "", "run a NATS server in this process on `address` (127.0.0.1:4222) for workers on this machine; --nats defaults to it")
	natsRetry := fs.Duration("nats-retry-after", backplane.DefaultRetryAfter, "send a forwarded idempotent request again after this long without an answer")
	reuse := fs.Bool("reuseport", false, "share the doors' ports with other nexo processes started with --reuseport (SO_REUSEPORT): the kernel spreads connections over them")
	gwName := fs.String("name", "", "this gateway's `name` in the cluster view (default HOST-PID)")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error (SIGHUP re-reads it from the config file)")
	check := fs.Bool("check", false, "check the settings (flags, NEXO_*, --config file) and exit: 0 when they are valid")
	otlp := addTracingFlag(fs)
	return func(args []string) (*serveSettings, error) {
		log, level, err := m.daemonLog("serve", args, logLevel)
		if err != nil {
			return nil, err
		}
		token := *adminToken
		if *adminTokenFile != "" {
			b, err := os.ReadFile(*adminTokenFile)
			if err != nil {
				return nil, usageError{"--admin-token-file: " + err.Error()}
			}
			token = strings.TrimSpace(string(b))
			if token == "" {
				return nil, usageError{"--admin-token-file " + *adminTokenFile + " is empty"}
			}
		}
		clientTokens, err := readTokens(*tokens, *tokenFile)
		if err != nil {
			return nil, err
		}
		allow, err := parseNetworks(*legacyAllow)
		if err != nil {
			return nil, usageError{"--legacy-allow: " + err.Error()}
		}
		tlsConf, err := certs.ServerConfig(*tlsCert, *tlsKey, *tlsClientCA)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		if *nativeAddr == "" && *legacyAddr == "" && *webAddr == "" {
			return nil, usageError{"every door is off: give --native-addr, --legacy-addr or --web-addr"}
		}
		sel, err := parseServices(*services)
		if err != nil {
			return nil, err
		}
		if *nf.url == "" && *natsEmbedded == "" && len(sel) < len(catalog.Names()) {
			return nil, usageError{"--services " + *services + " needs --nats or --nats-embedded: workers must serve the other services"}
		}
		origins, hosts := splitList(*wsOrigins), splitList(*allowedHosts)
		// Fields the flags do not set keep their zero value, which means the
		// server's default (MaxPending, for one, follows MaxFrame).
		cfg := server.Config{
			Version:           Version,
			Core:              *core,
			Loops:             *loopsN,
			Heartbeat:         *heartbeat,
			MaxFrame:          *maxFrame,
			MaxConns:          *maxConns,
			MaxConnsPerIP:     *maxConnsPerIP,
			MaxInFlight:       *maxInFlight,
			MaxInFlightTotal:  *maxInFlightTotal,
			MaxInFlightBytes:  *maxInFlightBytes,
			MaxPending:        *maxPending,
			WriteTimeout:      *writeTimeout,
			HandshakeTimeout:  *handshake,
			LegacyIdleTimeout: *legacyIdle,
			LegacyAllow:       allow,
			AdminToken:        token,
			Tokens:            clientTokens,
			AuthFailures:      *authFailures,
			AuthWindow:        *authWindow,
		}
		if err := cfg.Validate(); err != nil {
			return nil, usageError{"bad configuration: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
		}
		return &serveSettings{
			cfg: cfg, nativeAddr: *nativeAddr, legacyAddr: *legacyAddr, webAddr: *webAddr, admAdr: *adminAddr,
			origins: origins, hosts: hosts, pprof: *pprofOn, reuse: *reuse, tls: tlsConf, mtls: *tlsClientCA != "",
			services: sel, servicesText: *services, nats: nf, upstreams: ups, natsEmbedded: *natsEmbedded, natsRetry: *natsRetry,
			gatewayName: *gwName, drain: *drain, otlp: *otlp, log: log, level: level, fs: fs, check: *check,
		}, nil
	}
}

// adminConns bounds the admin listener's connections, which do not count
// against --max-conns: clients filling it never starve probes and metrics.
const adminConns = 256

// door is one listener of serve.
type door struct {
	name, addr string
	serve      func(net.Listener) error
	tls        bool // wrapped in TLS when --tls-cert is given
	admit      bool // an HTTP door: the server's admission wraps its listener
	ln         net.Listener
}

// process is a built server: everything serve runs, not yet listening.
type process struct {
	srv     *server.Server
	reg     *service.Registry
	doors   []*door
	https   []*http.Server
	closers []func() // run in reverse order when serve ends
}

func (p *process) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// buildServe builds the server, its registry, the NATS gateway when asked,
// and every door's handler.
func (m *Main) buildServe(set *serveSettings) (p *process, err error) {
	log := set.log
	p = &process{reg: service.NewRegistry()}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.srv, err = server.New(set.cfg, p.reg, log); err != nil {
		return p, usageError{"bad configuration: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	natsURL := *set.nats.url
	if set.natsEmbedded != "" {
		url, addr, stop, err := startEmbeddedNATS(set.natsEmbedded, log)
		if err != nil {
			return p, err
		}
		p.closers = append(p.closers, stop)
		if natsURL == "" {
			natsURL = url
			*set.nats.url = url
		}
		log.Info("listening", slog.String("door", "nats"), slog.String("addr", addr))
		if m.Listening != nil {
			m.Listening("nats", addr)
		}
	}
	co := catalog.Options{Select: set.services, Server: p.srv, Version: Version, Extra: m.Methods}
	var ups atomic.Pointer[[]*upstream.Upstream] // set below, before the doors open; the gateway reads it from NATS
	var ao admin.Options
	if natsURL != "" {
		name := set.gatewayName
		if name == "" {
			name = defaultName()
		}
		nc, err := set.nats.connect("nexo-gateway "+name, log)
		if err != nil {
			return p, err
		}
		p.closers = append(p.closers, nc.Close)
		gw, err := backplane.NewGateway(nc, p.srv, backplane.GatewayOptions{
			Name: name, Prefix: *set.nats.prefix, Version: Version, RetryAfter: set.natsRetry, Log: log, Tracer: set.cfg.Tracer,
			Upstreams: func() []upstream.Health {
				var hs []upstream.Health
				if p := ups.Load(); p != nil {
					for _, u := range *p {
						hs = append(hs, u.Health())
					}
				}
				return hs
			},
		})
		if err != nil {
			return p, err
		}
		// Runs after the server has drained, so nothing is waiting for a
		// worker any more; nc.Close (closed after it) then flushes.
		p.closers = append(p.closers, gw.Close)
		co.Gateway = gw
		co.Cluster = func(ctx context.Context) (any, error) {
			cl, err := gw.Cluster(ctx)
			for _, d := range p.reg.Describe(true) { // sys.cluster answers admins only
				cl.Methods = append(cl.Methods, backplane.ClusterMethod{Name: d.Name, ServedBy: d.ServedBy})
			}
			return cl, err
		}
		ao.Cluster, ao.Collectors = co.Cluster, append(ao.Collectors, gw.Collector())
	}
	// The services chosen run here; with NATS the others are stubs that
	// forward, and so is any method this binary does not know.
	if err := catalog.Register(p.reg, co); err != nil {
		return p, err
	}
	if len(set.upstreams.urls) > 0 {
		um := newUpstreamMethods(p.reg, log)
		dialed, err := set.upstreams.dial(set.cfg.MaxFrame, log, um.changed, um.add)
		if err != nil {
			return p, err
		}
		ups.Store(&dialed)
		for _, u := range dialed {
			p.closers = append(p.closers, u.Close)
		}
		ao.Collectors = append(ao.Collectors, upstream.Collector(dialed))
	}

	if set.nativeAddr != "" {
		p.doors = append(p.doors, &door{name: server.DoorNative, addr: set.nativeAddr, serve: p.srv.ServeNative, tls: true})
	}
	if set.legacyAddr != "" {
		// legacy clients speak plain TCP
		p.doors = append(p.doors, &door{name: server.DoorLegacy, addr: set.legacyAddr, serve: p.srv.ServeLegacy})
	}
	if set.webAddr != "" {
		p.addHTTP("web", set.webAddr, web.Handler(web.Options{Server: p.srv, Listen: set.webAddr, Hosts: set.hosts, OriginPatterns: set.origins, Log: log}), log)
	}
	if set.admAdr != "" {
		ao.Server, ao.Listen, ao.Hosts, ao.Pprof, ao.Log = p.srv, set.admAdr, set.hosts, set.pprof, log
		h, err := admin.Handler(ao)
		if err != nil {
			return p, err
		}
		p.addHTTP("admin", set.admAdr, h, log)
	}
	return p, nil
}

// addHTTP adds a door served by an HTTP server.
func (p *process) addHTTP(name, addr string, h http.Handler, log *slog.Logger) {
	hs := p.srv.HTTPServer(name, h, slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	p.https = append(p.https, hs)
	p.doors = append(p.doors, &door{name: name, addr: addr, tls: true, admit: true, serve: func(ln net.Listener) error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return server.ErrServerClosed
	}})
}

// listen opens every door's listener, or none.
func (p *process) listen(ctx context.Context, set *serveSettings) error {
	var lc net.ListenConfig
	if set.reuse {
		if err := reusePort(&lc); err != nil {
			return usageError{err.Error()}
		}
	}
	for i, d := range p.doors {
		ln, err := lc.Listen(ctx, "tcp", d.addr)
		if err != nil {
			for _, d := range p.doors[:i] {
				d.ln.Close()
			}
			return fmt.Errorf("%s door: %w", d.name, err)
		}
		if d.admit {
			refusal := server.HTTPRefusal
			if set.tls != nil {
				refusal = nil // a TLS client cannot read a plain 503
			}
			if d.name == "admin" {
				ln = p.srv.AdminListener(ln, d.name, adminConns, refusal)
			} else {
				ln = p.srv.Listener(ln, d.name, refusal)
			}
		}
		if set.tls != nil && d.tls {
			ln = tls.NewListener(ln, set.tls)
		}
		d.ln = ln
	}
	return nil
}

// runServe serves every door until a signal or a failed door, then drains.
func (m *Main) runServe(ctx context.Context, set *serveSettings, p *process) error {
	log, cfg := set.log, set.cfg
	log.Info("nexo starting", slog.String("version", Version), slog.Duration("heartbeat", cfg.Heartbeat),
		slog.Int("max_frame", cfg.MaxFrame), slog.Int("max_conns", cfg.MaxConns), slog.Bool("admin_token", cfg.AdminToken != ""),
		slog.Int("client_tokens", len(cfg.Tokens)), slog.Bool("tls", set.tls != nil), slog.Bool("mtls", set.mtls),
		slog.String("nats", *set.nats.url),
		slog.Any("methods", p.reg.Names(true)))
	if set.legacyAddr != "" && (len(cfg.Tokens) > 0 || set.tls != nil) && len(cfg.LegacyAllow) == 0 {
		log.Warn("the legacy door cannot authenticate or encrypt, and accepts every network; " +
			"restrict it with --legacy-allow or turn it off with --legacy-addr \"\"")
	}
	p.srv.Start()
	errc := make(chan error, len(p.doors))
	for _, d := range p.doors {
		addr := d.ln.Addr().String()
		log.Info("listening", slog.String("door", d.name), slog.String("addr", addr), slog.Bool("tls", set.tls != nil && d.tls))
		if m.Listening != nil {
			m.Listening(d.name, addr)
		}
		go func() { errc <- d.serve(d.ln) }()
	}
	notifySystemd(log, daemon.SdNotifyReady)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var serveErr error
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received; draining", slog.Duration("drain_timeout", set.drain))
			break wait
		case serveErr = <-errc:
			log.Error("a door failed; shutting down", slog.Any("err", serveErr))
			break wait
		case <-hup:
			if onCommandLine(set.fs, "log-level") {
				log.Info("SIGHUP: log level fixed on the command line; unchanged")
				continue
			}
			m.reloadLogLevel(set.fs, log, set.level)
		}
	}
	notifySystemd(log, daemon.SdNotifyStopping)
	sctx, cancel := context.WithTimeout(context.Background(), set.drain)
	defer cancel()
	// The server drains first, so /readyz turns 503 before anything closes
	// and WebSocket clients get their GOODBYE; the HTTP servers then finish
	// the calls in progress.
	done := make(chan error, 1)
	go func() { done <- p.srv.Shutdown(sctx) }()
	for _, hs := range p.https {
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("HTTP drain timed out", slog.Any("err", err))
		}
	}
	if err := <-done; err != nil {
		log.Warn("drain timed out; remaining connections closed", slog.Any("err", err))
	}
	log.Info("nexo stopped")
	return serveErr
}

// daemonLog checks that a long-running command (serve, worker) was given
// no arguments, and returns its logger: text on stderr at the level of
// --log-level, which the returned LevelVar can change later.
func (m *Main) daemonLog(name string, args []string, levelText *string) (*slog.Logger, *slog.LevelVar, error) {
	if len(args) > 0 {
		return nil, nil, usageError{fmt.Sprintf("%s takes no arguments, got %q", name, args)}
	}
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(*levelText)); err != nil {
		return nil, nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", *levelText)}
	}
	// A line logged about a traced request carries its trace id.
	return slog.New(tracing.LogHandler(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))), level, nil
}

// addTracingFlag adds --otlp-endpoint, shared by serve and worker.
func addTracingFlag(fs *pflag.FlagSet) *string {
	return fs.String("otlp-endpoint", "", "export traces of requests over OTLP/HTTP to this `URL` (http://127.0.0.1:4318); OTEL_EXPORTER_OTLP_ENDPOINT and the other OTEL_* variables work too; unset, tracing is off")
}

// startTracing makes the exporter of traces to --otlp-endpoint or the
// OTEL_* endpoint (see tracing.Start), which sends nothing until the first
// span ends; with neither, the tracer is nil: tracing is off. The SDK's
// own errors (a collector that does not answer) go to log. stop flushes
// what is left.
func startTracing(ctx context.Context, flag, role string, log *slog.Logger) (tracer trace.Tracer, stop func(), err error) {
	tracer, shutdown, err := tracing.Start(ctx, flag, role)
	if err != nil {
		return nil, nil, usageError{err.Error()}
	}
	if tracer != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("traces not exported", slog.Any("err", err))
		}))
		log.Info("tracing requests", slog.String("otlp", tracing.Endpoint(flag)))
	}
	return tracer, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("cannot send the last traces", slog.Any("err", err))
		}
	}, nil
}

// reloadLogLevel re-reads log-level on SIGHUP: from the environment or the
// config file, unless the command line fixed it.
func (m *Main) reloadLogLevel(fs *pflag.FlagSet, log *slog.Logger, level *slog.LevelVar) {
	text := level.Level().String()
	if m.getenv("NEXO_LOG_LEVEL") != "" { // the environment wins over the file, as at start
		text = m.getenv("NEXO_LOG_LEVEL")
	} else if path := fs.Lookup("config").Value.String(); path != "" {
		if v, err := configValue(path, "log-level"); err != nil {
			log.Warn("SIGHUP: cannot read the config file; log level unchanged", slog.Any("err", err))
			return
		} else if v != "" {
			text = v
		}
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(text)); err != nil {
		log.Warn("SIGHUP: bad log level; unchanged", slog.String("level", text))
		return
	}
	level.Set(l)
	log.Info("SIGHUP: log level set", slog.String("level", l.String()))
}

// notifySystemd tells systemd (Type=notify) about the server's state; it
// does nothing when not started by systemd.
func notifySystemd(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify systemd", slog.Any("err", err))
	}
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(list string) []string {
	var out []string
	for v := range strings.SplitSeq(list, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// readTokens gathers the client tokens from --tokens (comma-separated) and
// --token-file (one per line; blank lines and # comments skipped).
func readTokens(list, file string) ([]string, error) {
	var out []string
	for t := range strings.SplitSeq(list, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	if file == "" {
		return out, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usageError{"--token-file: " + err.Error()}
	}
	n := len(out)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	if len(out) == n {
		return nil, usageError{"--token-file " + file + " holds no token"}
	}
	return out, nil
}

// parseNetworks parses a comma-separated list of CIDR prefixes; a bare
// address stands for itself (/32 or /128).
func parseNetworks(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
