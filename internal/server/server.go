// Package server is nexo's back end: it accepts connections on its doors
// (native and legacy), keeps one session per client with a unique id,
// dispatches requests through one service registry, watches liveness with
// heartbeats, and shuts down without losing an accepted request.
//
// Lock order: a session's batch writer lock, then sessionTable.mu (an
// inline handler such as sys.info runs under its session's writer lock and
// may read the table). Server.mu is never held with either. Nothing takes a
// writer lock while holding sessionTable.mu or Server.mu.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/wire"
)

// ErrServerClosed is returned by the Serve methods after Shutdown.
var ErrServerClosed = errors.New("server: closed")

// Constant log attribute keys.
const (
	keyClientID = "client_id"
	keyDoor     = "door"
	keyRemote   = "remote"
	keyReason   = "reason"
	keyError    = "err"
	keyAddr     = "addr"
)

// Server serves the registry's methods to clients on any number of
// listeners. Create it with New, call a Serve method per listener, and stop
// it with Shutdown.
type Server struct {
	cfg     Config
	reg     *service.Registry
	log     *slog.Logger
	table   *sessionTable
	metrics *metrics
	hub     *hub
	promReg *prometheus.Registry
	adm     *admission
	authLog logLimiter // failed authentications
	limLog  logLimiter // connections refused over a limit

	ids      atomic.Uint64 // last client id given out
	conns    atomic.Int64  // open sockets on every door, handshaking included
	async    atomic.Int64  // handler goroutines running
	shutting atomic.Bool

	mu          sync.Mutex
	listeners   map[net.Listener]struct{} // guarded by mu
	handshaking map[net.Conn]struct{}     // guarded by mu
	hbOnce      sync.Once
	stopOnce    sync.Once
	hbStop      chan struct{}          // closed by Shutdown
	hbDone      chan struct{}          // closed when the heartbeat loop exits
	pubDone     chan struct{}          // closed when the publish loop exits
	poll        atomic.Pointer[poller] // parked idle connections; nil where there is no poller
	started     time.Time
}

// New returns a server for the registry's methods. A nil logger discards.
func New(cfg Config, reg *service.Registry, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:         cfg,
		reg:         reg,
		log:         log,
		table:       newSessionTable(cfg.ClosedHistory),
		metrics:     newMetrics(),
		hub:         newHub(),
		adm:         newAdmission(cfg),
		listeners:   make(map[net.Listener]struct{}),
		handshaking: make(map[net.Conn]struct{}),
		hbStop:      make(chan struct{}),
		hbDone:      make(chan struct{}),
		pubDone:     make(chan struct{}),
		started:     time.Now(),
	}
	s.promReg = newRegistry(s)
	return s, nil
}

// Start starts the server's timers (heartbeats, published statistics) and
// the poller of idle connections. The Serve methods call it; a server used
// only through ServeWebSocket calls it once itself. It is idempotent.
func (s *Server) Start() {
	s.hbOnce.Do(func() {
		if p, err := newPoller(); err == nil {
			s.poll.Store(p)
		} else {
			s.log.Debug("idle connections keep their goroutines", slog.Any(keyError, err))
		}
		go s.heartbeatLoop()
		go s.publishLoop()
	})
}

// IsAdmin reports whether a caller is an administrator: it gave the admin
// token (compared in constant time), or no token is configured and it
// connected from loopback.
func (s *Server) IsAdmin(loopback bool, token string) bool {
	if s.cfg.AdminToken == "" {
		return loopback
	}
	return s.adm.isAdminToken(token)
}

// Accepting reports whether the server accepts new clients: false once
// Shutdown has begun. /readyz reports it.
func (s *Server) Accepting() bool { return !s.shutting.Load() }

// Observe counts a request answered outside a session (POST /rpc): the
// method (nil when unknown), its result code and its duration.
func (s *Server) Observe(m *service.Method, code wire.Code, d time.Duration) {
	s.metrics.record(rand.IntN(shards), s.metrics.statOf(m), code, d)
}

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// ClientCount returns the number of connected clients.
func (s *Server) ClientCount() int { return s.table.count() }

// Snapshot returns the client list: connected clients by id, and the
// recently closed ones, newest first, with their reasons.
func (s *Server) Snapshot() any { return s.table.snapshot() }

// Stats are server-wide totals since the server started.
type Stats struct {
	Version  string            `json:"version"`
	UptimeS  float64           `json:"uptime_s"`
	Clients  int               `json:"clients"`        // connected now
	Doors    map[string]int    `json:"doors"`          // connected now, by door
	Accepted uint64            `json:"accepted"`       // connections accepted, all doors
	Rejected uint64            `json:"rejected"`       // connections refused over a limit
	Requests uint64            `json:"requests"`       // requests answered, all doors
	Closed   map[string]uint64 `json:"closed"`         // sessions closed, by reason
	Last     *Sample           `json:"last,omitempty"` // the last second
}

// Stats returns the server-wide totals.
func (s *Server) Stats() Stats {
	st := Stats{
		Version:  s.cfg.Version,
		UptimeS:  time.Since(s.started).Round(time.Millisecond).Seconds(),
		Doors:    make(map[string]int),
		Requests: s.metrics.requests(),
		Closed:   make(map[string]uint64),
	}
	for _, sess := range s.table.appendLive(nil) {
		st.Doors[sess.door]++
		st.Clients++
	}
	for i := range doors {
		st.Accepted += s.metrics.accepted[i].Load()
		st.Rejected += s.metrics.rejected[i].Load()
	}
	for r := range s.metrics.byReason {
		if n := s.metrics.byReason[r].Load(); n > 0 {
			st.Closed[closeReason(r).String()] = n
		}
	}
	if h := s.History(); len(h) > 0 {
		st.Last = &h[len(h)-1]
	}
	return st
}

// Clients returns the client list; see Snapshot.
func (s *Server) Clients() Snapshot { return s.table.snapshot() }

// Client returns one connected client's row of the list.
func (s *Server) Client(id uint64) (ClientInfo, bool) {
	sess := s.table.get(id)
	if sess == nil {
		return ClientInfo{}, false
	}
	return sess.info(), true
}

// Kick ends a client's session: it gets GOODBYE with the reason (a native
// GOODBYE frame, or event.goodbye and a close frame on a WebSocket), its
// in-flight requests finish, then it is closed. It reports whether the
// client was connected.
func (s *Server) Kick(id uint64, reason string) bool {
	sess := s.table.get(id)
	if sess == nil {
		return false
	}
	sess.logger().Info("kicking client", slog.String(keyReason, reason))
	sess.beginDrain(reasonKicked, "kicked: "+reason)
	return true
}

// ServeNative accepts native-protocol connections on ln until Shutdown.
func (s *Server) ServeNative(ln net.Listener) error { return s.serve(ln, DoorNative, s.handleNative) }

// ServeLegacy accepts legacy-protocol connections on ln until Shutdown.
func (s *Server) ServeLegacy(ln net.Listener) error { return s.serve(ln, DoorLegacy, s.handleLegacy) }

func (s *Server) serve(ln net.Listener, door string, handle func(net.Conn)) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	s.Start()

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors or a transient failure: back off and try
			// again, so the server survives and accepts once it can.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", slog.String(keyDoor, door), slog.Any(keyError, err), slog.Duration("delay", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		if why := s.admit(remoteIP(c.RemoteAddr()), door); why != admitted {
			s.refuseConn(c, door, why)
			continue
		}
		s.metrics.accepted[doorIndex(door)].Add(1)
		go handle(c)
	}
}

// refuseConn answers a connection that was not admitted and closes it: a
// BUSY (or UNAUTHORIZED) reply when under the limits on refusers, nothing
// at all for a network the door does not serve or once maxRefusers are
// already busy.
func (s *Server) refuseConn(c net.Conn, door string, why refusal) {
	s.logRefusal(door, c.RemoteAddr().String(), why)
	code := wire.CodeBusy
	switch why {
	case refusedNetwork:
		_ = c.Close()
		return
	case refusedAuthLimit:
		code = wire.CodeUnauthorized
		s.metrics.authFailures[doorIndex(door)].Add(1)
	}
	if s.adm.refusers.Add(1) > maxRefusers {
		s.adm.refusers.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer s.adm.refusers.Add(-1)
		refuse(c, fatalReply(door, code, string(why)), min(s.cfg.Linger, time.Second))
	}()
}

// refuse writes a last reply to a connection that has no session, and
// closes it without resetting what it wrote.
func refuse(c net.Conn, reply []byte, linger time.Duration) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(reply); err == nil {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		lingerDiscard(c, linger)
	}
	_ = c.Close()
}

// lingerDiscard reads and drops what the peer still sends, until it closes
// or the linger time is over, so that closing does not reset the
// connection while our last bytes are unread.
func lingerDiscard(c net.Conn, linger time.Duration) {
	_ = c.SetReadDeadline(time.Now().Add(linger))
	_, _ = io.CopyN(io.Discard, c, 1<<20) // ends on EOF, deadline or the cap; all the same here
}

func (s *Server) trackHandshake(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.handshaking, c)
		return true
	}
	if s.shutting.Load() {
		return false
	}
	s.handshaking[c] = struct{}{}
	return true
}

// register adds a session to the client list. A session that arrives while
// the server shuts down starts draining at once.
func (s *Server) register(sess *session) {
	s.table.add(sess)
	s.hub.changed()
	sess.logger().Info("client connected", slog.String("name", sess.caller.Name))
	if s.shutting.Load() {
		sess.beginDrain(reasonServerShutdown, "server shutting down")
	}
}

// heartbeatLoop is the one timer behind every session's liveness: it sends
// PINGs at the announced interval and closes sessions that fell silent.
func (s *Server) heartbeatLoop() {
	defer close(s.hbDone)
	hb := s.cfg.Heartbeat
	t := time.NewTicker(hb / 4)
	defer t.Stop()
	var buf []*session
	for {
		select {
		case <-s.hbStop:
			return
		case now := <-t.C:
			buf = s.table.appendLive(buf[:0])
			s.checkLiveness(buf, now)
			clear(buf) // drop references to closed sessions
		}
	}
}

// checkLiveness closes native and WebSocket sessions silent for over 2 intervals plus a
// quarter (the check runs every quarter, so a dead client is gone within 2
// intervals plus a grace of half an interval) and pings the others once per
// interval. Legacy sessions cannot answer PINGs: they have an idle timeout.
func (s *Server) checkLiveness(sessions []*session, now time.Time) {
	hb := s.cfg.Heartbeat
	deadAfter := (2*hb + hb/4).Nanoseconds()
	nowNS := now.UnixNano()
	for _, sess := range sessions {
		silent := nowNS - sess.lastSeen.Load()
		switch sess.door {
		case DoorNative, DoorWS:
			if silent > deadAfter {
				sess.logger().Info("heartbeat timeout", slog.Duration("silent", time.Duration(silent).Round(time.Millisecond)))
				sess.close(reasonHeartbeatTimeout)
				continue
			}
			if nowNS-sess.pingSent.Load() >= (hb - hb/8).Nanoseconds() {
				if sess.ws != nil {
					sess.pingWS(now)
				} else {
					sess.sendPing(now)
				}
			}
		case DoorLegacy:
			if silent > s.cfg.LegacyIdleTimeout.Nanoseconds() {
				sess.close(reasonIdleTimeout)
			}
		}
	}
}

// Shutdown stops accepting, says GOODBYE to every client, lets in-flight
// requests finish and their responses be written, and returns once every
// connection is closed. When ctx ends first, the remaining connections are
// closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		_ = ln.Close() // Serve returns ErrServerClosed
	}
	for c := range s.handshaking {
		_ = c.Close() // not a client yet: nothing to drain
	}
	s.mu.Unlock()

	live := s.table.appendLive(nil)
	s.log.Info("shutting down", slog.Int("clients", len(live)))
	for _, sess := range live {
		sess.beginDrain(reasonServerShutdown, "server shutting down")
	}
	defer func() {
		s.hbOnce.Do(func() { close(s.hbDone); close(s.pubDone) }) // never started
		s.stopOnce.Do(func() { close(s.hbStop) })
		<-s.hbDone
		<-s.pubDone
		if p := s.poll.Load(); p != nil {
			p.close()
		}
	}()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if s.conns.Load() == 0 && s.async.Load() == 0 {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			for _, sess := range s.table.appendLive(nil) {
				sess.close(reasonServerShutdown)
			}
			return ctx.Err()
		}
	}
}
