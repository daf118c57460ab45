package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/service"
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

func addNATSFlags(fs *flag.FlagSet, defaultURL string) natsFlags {
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

func (m *Main) worker(ctx context.Context, args []string) error {
	fs := m.flags("worker", "")
	fs.String("config", "", "TOML `file` of settings named like these flags; flags and NEXO_* win over it")
	nf := addNATSFlags(fs, nats.DefaultURL)
	services := fs.String("services", "all", "services to serve: all, or a comma-separated list of math, sys")
	healthAddr := fs.String("health-addr", "", "serve /livez and /readyz (ready while connected to NATS) on this `address`; empty turns it off")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long requests in hand may take to finish")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	log, _, err := m.parseDaemon(fs, args, logLevel)
	if err != nil {
		return err
	}
	sel, err := parseServices(*services)
	if err != nil {
		return err
	}
	if len(sel) == 0 && len(m.Methods) == 0 {
		return usageError{"--services none: a worker needs at least one service"}
	}
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
	nc, err := nf.connect("nexo-worker "+name, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := backplane.NewWorker(nc, reg, backplane.WorkerOptions{
		Prefix:   *nf.prefix,
		Version:  Version,
		Metadata: map[string]string{"services": strings.Join(names, ","), "host": name},
		Log:      log,
	})
	if err != nil {
		return err
	}
	log.Info("nexo worker started", slog.String("version", Version), slog.String("nats", *nf.url),
		slog.String("prefix", *nf.prefix), slog.Any("methods", reg.Names(true)))

	var hs *http.Server
	if *healthAddr != "" {
		ln, err := net.Listen("tcp", *healthAddr)
		if err != nil {
			_ = w.Stop(ctx)
			return fmt.Errorf("health address: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !nc.IsConnected() {
				http.Error(w, "not connected to NATS\n", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ready\n"))
		})
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
	err = w.Stop(sctx)
	if hs != nil {
		_ = hs.Shutdown(sctx)
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Warn("drain incomplete", slog.Any("err", err))
	}
	log.Info("nexo worker stopped")
	return nil
}
