package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/gateway"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/internal/sys"
)

func (m *Main) serve(ctx context.Context, args []string) error {
	fs := m.flags("serve", "")
	d := server.DefaultConfig()
	nativeAddr := fs.String("native-addr", "127.0.0.1:7070", "native protocol `address`; empty turns the door off")
	legacyAddr := fs.String("legacy-addr", "127.0.0.1:7071", "legacy (Python struct) protocol `address`; empty turns the door off")
	webAddr := fs.String("web-addr", "", "web door `address`: JSON-RPC 2.0 over HTTP (POST /rpc); empty turns it off")
	adminAddr := fs.String("admin-addr", "", "admin API `address` (not available yet: must stay empty)")
	heartbeat := fs.Duration("heartbeat", d.Heartbeat, "PING `interval`; a client silent for 2 intervals plus a grace is closed")
	maxFrame := fs.Int("max-frame", d.MaxFrame, "largest frame length accepted, in `bytes`")
	maxConns := fs.Int("max-conns", d.MaxConns, "most open connections over all doors")
	maxInFlight := fs.Int("max-inflight", d.MaxInFlight, "most concurrent requests per connection")
	handshake := fs.Duration("handshake-timeout", d.HandshakeTimeout, "how long a new native connection may take to send HELLO")
	legacyIdle := fs.Duration("legacy-idle", d.LegacyIdleTimeout, "close a legacy connection silent this long")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	if *adminAddr != "" {
		return usageError{"--admin-addr: the admin API is not in this build yet; leave it empty"}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", *logLevel)}
	}
	log := slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))

	// Fields the flags do not set keep their zero value, which means the
	// server's default (MaxPending, for one, follows MaxFrame).
	cfg := server.Config{
		Version:           version,
		Heartbeat:         *heartbeat,
		MaxFrame:          *maxFrame,
		MaxConns:          *maxConns,
		MaxInFlight:       *maxInFlight,
		HandshakeTimeout:  *handshake,
		LegacyIdleTimeout: *legacyIdle,
	}
	if *nativeAddr == "" && *legacyAddr == "" && *webAddr == "" {
		return usageError{"every door is off: give --native-addr, --legacy-addr or --web-addr"}
	}

	reg := service.NewRegistry()
	srv, err := server.New(cfg, reg, log)
	if err != nil {
		return usageError{"bad configuration: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	// One line per service.
	if err := errors.Join(
		reg.Register(calc.Methods()...),
		reg.Register(sys.Methods(srv, reg, version)...),
	); err != nil {
		return err
	}

	type door struct {
		name, addr string
		serve      func(net.Listener) error
	}
	var doors []door
	if *nativeAddr != "" {
		doors = append(doors, door{server.DoorNative, *nativeAddr, srv.ServeNative})
	}
	if *legacyAddr != "" {
		doors = append(doors, door{server.DoorLegacy, *legacyAddr, srv.ServeLegacy})
	}
	var web *http.Server
	if *webAddr != "" {
		web = &http.Server{
			Handler:           gateway.NewRPC(reg, 0).Handler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		doors = append(doors, door{"web", *webAddr, func(ln net.Listener) error {
			if err := web.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return server.ErrServerClosed
		}})
	}
	var lc net.ListenConfig
	lns := make([]net.Listener, 0, len(doors))
	for _, d := range doors {
		ln, err := lc.Listen(ctx, "tcp", d.addr)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return fmt.Errorf("%s door: %w", d.name, err)
		}
		lns = append(lns, ln)
	}
	log.Info("nexo starting", slog.String("version", version), slog.Duration("heartbeat", cfg.Heartbeat),
		slog.Int("max_frame", cfg.MaxFrame), slog.Int("max_conns", cfg.MaxConns), slog.Any("methods", reg.Names(true)))
	errc := make(chan error, len(doors))
	for i, d := range doors {
		addr := lns[i].Addr().String()
		log.Info("listening", slog.String("door", d.name), slog.String("addr", addr))
		if m.Listening != nil {
			m.Listening(d.name, addr)
		}
		go func() { errc <- d.serve(lns[i]) }()
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("signal received; draining", slog.Duration("drain_timeout", *drain))
	case serveErr = <-errc:
		log.Error("a door failed; shutting down", slog.Any("err", serveErr))
	}
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if web != nil {
		// HTTP calls are short: let those in progress finish, then close.
		if err := web.Shutdown(sctx); err != nil {
			log.Warn("web door drain timed out", slog.Any("err", err))
		}
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("drain timed out; remaining connections closed", slog.Any("err", err))
	}
	log.Info("nexo stopped")
	return serveErr
}
