// Package server is nexo's back end: the session core and the binary
// doors. It accepts connections, keeps one session per client with a
// unique id, admits and dispatches requests through one service registry,
// watches liveness with heartbeats, and shuts down without losing an
// accepted request.
//
// A door is a Codec (its wire format) plus a reader and a listener. The
// native and legacy doors live here (native.go, legacy.go); the WebSocket
// door lives with the web door (internal/web) and drives the same core
// through Session. See docs/architecture.md.
//
// Lock order (a lock may be taken while holding those above it, never
// the other way):
//
//	Server.mu            listeners and handshaking connections
//	hub.mu               event subscriptions, samples; guards session.gone
//	sessionTable.mu      live sessions and the ring of closed ones
//	admission.mu         per-address connection counts and auth failures
//	poller.mu            parked connections
//	batch.Writer.mu      one session's pending output: codecs encode under
//	                     it (the WebSocket codec takes its wsConn.mu), no
//	                     handler runs under it
//
// No lock is held while a handler, a codec's reader or a callback runs,
// except that codecs encode under batch.Writer.mu.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
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
)

// Server serves the registry's methods to clients on any number of
// listeners. Create it with New, call a Serve method per listener, and stop
// it with Shutdown.
type Server struct {
	cfg        Config
	reg        *service.Registry
	log        *slog.Logger
	table      *sessionTable
	metrics    *metrics
	hub        *hub
	adm        *admission
	maxPayload int // the largest answer payload that fits in a frame

	ids      atomic.Uint64 // last client id given out
	conns    atomic.Int64  // open sockets on every door, handshaking included
	binConns atomic.Int64  // of them, those of the binary doors' own accept loops: Shutdown waits for them
	async    atomic.Int64  // requests served beside their readers, server-wide
	shutting atomic.Bool

	mu          sync.Mutex
	listeners   map[net.Listener]struct{} // guarded by mu
	handshaking map[net.Conn]struct{}     // guarded by mu
	hbOnce      sync.Once
	stopOnce    sync.Once
	hbStop      chan struct{}          // closed by Shutdown
	hbDone      chan struct{}          // closed when the heartbeat loop exits
	lingerDone  chan struct{}          // closed when the linger loop exits
	lingering   chan lingering         // refused connections to close later
	pubDone     chan struct{}          // closed when the publish loop exits
	poll        atomic.Pointer[poller] // parked idle connections; nil where there is no poller
	loops       atomic.Pointer[loops]  // the event loops (Config.Core "loop"); nil: goroutines
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
		maxPayload:  cfg.MaxFrame - (wire.HeaderLen - 4),
		listeners:   make(map[net.Listener]struct{}),
		handshaking: make(map[net.Conn]struct{}),
		hbStop:      make(chan struct{}),
		hbDone:      make(chan struct{}),
		lingerDone:  make(chan struct{}),
		lingering:   make(chan lingering, lingerQueue),
		pubDone:     make(chan struct{}),
		started:     time.Now(),
	}
	return s, nil
}

// Start starts the server's timers (heartbeats, published statistics) and
// the poller of idle connections. The Serve methods call it; a server used
// only through doors outside this package calls it once itself. It is
// idempotent.
func (s *Server) Start() {
	s.hbOnce.Do(func() {
		if s.cfg.Core == CoreLoop {
			if ls, err := newLoops(s, s.cfg.Loops); err == nil {
				s.loops.Store(ls)
			} else {
				s.log.Debug("no event loops; connections have goroutines", slog.Any(keyError, err))
			}
		}
		if p, err := newPoller(); err == nil {
			s.poll.Store(p)
		} else {
			s.log.Debug("idle connections keep their goroutines", slog.Any(keyError, err))
		}
		go s.heartbeatLoop()
		go s.publishLoop()
		go s.lingerLoop()
	})
}

// Core returns how plain-TCP native connections are served:
// CoreLoop when the event loops run, else CoreGoroutine (the setting,
// or a system without loops).
func (s *Server) Core() string {
	if s.loops.Load() != nil {
		return CoreLoop
	}
	return CoreGoroutine
}

// Accepting reports whether the server accepts new clients: false once
// Shutdown has begun. /readyz reports it.
func (s *Server) Accepting() bool { return !s.shutting.Load() }

// Observe counts a request answered outside a session (POST /rpc): the
// method (nil when unknown), its result code and its duration.
func (s *Server) Observe(m *service.Method, code wire.Code, d time.Duration) {
	s.metrics.observe(int(s.ids.Load()%shards), m, code, d)
}

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Registry returns the registry the server dispatches to.
func (s *Server) Registry() *service.Registry { return s.reg }

// ClientCount returns the number of connected clients.
func (s *Server) ClientCount() int { return s.table.count() }

// Stats returns the server-wide totals.
func (s *Server) Stats() status.Stats {
	st := status.Stats{
		Version:  s.cfg.Version,
		UptimeS:  time.Since(s.started).Round(time.Millisecond).Seconds(),
		Doors:    make(map[string]int),
		Requests: s.metrics.requests(),
		Closed:   make(map[string]uint64),
	}
	st.Clients = s.metrics.clientsByDoor(st.Doors)
	for _, d := range s.metrics.doorList() {
		if d.upgrades.Load() {
			continue // its connections are counted on the door that accepted them
		}
		st.Accepted += d.accepted.Load()
		st.Rejected += d.rejected.Load()
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

// Clients returns the client list: connected clients by id, and the
// recently closed ones, newest first, with their reasons.
func (s *Server) Clients() status.Snapshot { return s.table.snapshot() }

// Client returns one connected client's row of the list.
func (s *Server) Client(id uint64) (status.ClientInfo, bool) {
	sess := s.table.get(id)
	if sess == nil {
		return status.ClientInfo{}, false
	}
	return sess.info(), true
}

// Kick ends a client's session: it gets the door's GOODBYE with the
// reason, its in-flight requests finish, then it is closed. It reports
// whether the client was connected.
func (s *Server) Kick(id uint64, reason string) bool {
	sess := s.table.get(id)
	if sess == nil {
		return false
	}
	sess.logger().Info("kicking client", slog.String(keyReason, reason))
	sess.beginDrain(reasonKicked, "kicked: "+reason)
	return true
}

// lookup returns the method a binary door calls by name: a registered
// one, or the fallback (a gateway's forwarder), or nil.
func (s *Server) lookup(name []byte, c *service.LookupCache) *service.Method {
	if m := s.reg.LookupCached(name, c); m != nil {
		return m
	}
	return s.reg.Fallback()
}

// listener is what the accept loop needs of a door.
type listener struct {
	door   string
	handle func(net.Conn)                                    // runs one admitted connection; must call Leave
	fatal  func(b []byte, code wire.Code, msg string) []byte // last words to a refused connection
	allow  []netip.Prefix                                    // when not empty, the only networks served
}

func (s *Server) serve(ln net.Listener, l listener) error {
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
	door := s.metrics.door(l.door)

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
			s.log.Warn("accept failed; retrying", slog.String(keyDoor, l.door), slog.Any(keyError, err), slog.Duration("delay", delay))
			time.Sleep(delay)
			continue
		}
		delay = 0
		ip := remoteIP(c.RemoteAddr())
		if len(l.allow) > 0 && !allowed(l.allow, ip) {
			s.logRefusal(door, c.RemoteAddr().String(), refusedNetwork)
			_ = c.Close()
			continue
		}
		if err := s.Admit(ip, l.door); err != nil {
			s.refuseConn(c, l, err)
			continue
		}
		door.accepted.Add(1)
		s.binConns.Add(1)
		go l.handle(c)
	}
}

// refuseConn answers a connection that was not admitted and closes it,
// within refuseLinger: the door's refusal (BUSY, UNAUTHORIZED, HTTP 503),
// then a close that does not reset it. Up to maxRefusers goroutines
// linger for the peer to read it; past that, the accept loop answers at
// once and closes after a short drain of what the peer already sent, so
// that no refusal is silent, however many come at once.
func (s *Server) refuseConn(c net.Conn, l listener, err *RefusedError) {
	reply := l.fatal(nil, err.Code, err.Reason)
	if s.adm.refusers.Add(1) > maxRefusers {
		s.adm.refusers.Add(-1)
		s.refuseLater(c, reply)
		return
	}
	go func() {
		defer s.adm.refusers.Add(-1)
		refuse(c, reply, min(s.cfg.Linger, refuseLinger))
	}()
}

// refuseLater answers a refused connection from the accept loop without
// waiting: the reply is written (a new socket's buffer takes it at once,
// so the deadline only bounds a peer gone wrong; a tighter one could pass
// before the write begins if the scheduler runs something else between
// the two, and the refusal would be lost) and the write side closed, and the one linger goroutine closes the
// connection refuseLinger later, after draining what the peer sent, so
// that the close does not reset the reply. Past lingerQueue connections
// waiting, one is closed at once.
func (s *Server) refuseLater(c net.Conn, reply []byte) {
	lastWords(c, reply, refuseLinger)
	select {
	case s.lingering <- lingering{c, time.Now().Add(refuseLinger)}:
	default:
		_ = c.Close()
	}
}

// lingering is a refused connection waiting to be closed.
type lingering struct {
	c  net.Conn
	at time.Time
}

// lingerQueue bounds the refused connections waiting to be closed.
const lingerQueue = 4096

// lingerLoop closes refused connections when their linger is over, in
// the order they came (all linger the same time), until Shutdown.
func (s *Server) lingerLoop() {
	defer close(s.lingerDone)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.hbStop:
			for {
				select {
				case l := <-s.lingering:
					_ = l.c.Close()
				default:
					return
				}
			}
		case l := <-s.lingering:
			if d := time.Until(l.at); d > 0 {
				t.Reset(d)
				select {
				case <-t.C:
				case <-s.hbStop:
					_ = l.c.Close()
					continue
				}
			}
			lingerDiscard(l.c, 0) // what has arrived only
			_ = l.c.Close()
		}
	}
}

// refuse writes a last reply to a connection that has no session, and
// closes it without resetting what it wrote.
func refuse(c net.Conn, reply []byte, linger time.Duration) {
	if lastWords(c, reply, refuseLinger) {
		lingerDiscard(c, linger)
	}
	_ = c.Close()
}

// lastWords writes a refused connection's reply and half-closes it, and
// reports whether it did: a door that cannot answer (TLS before its
// handshake) has no reply. A new socket's buffer takes the reply at once;
// timeout only bounds a peer gone wrong.
func lastWords(c net.Conn, reply []byte, timeout time.Duration) bool {
	if len(reply) == 0 {
		return false
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(reply); err != nil {
		return false
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	return true
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
	s.metrics.opened.Add(1)
	if sess.debugging() {
		sess.logger().Debug("client connected", slog.String("name", sess.caller.Name))
	}
	if s.shutting.Load() {
		sess.beginDrain(reasonServerShutdown, "server shutting down")
	}
}

// heartbeatLoop is the one timer behind every session's liveness: it sends
// heartbeats at the announced interval and closes sessions that fell
// silent.
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
			for _, sess := range buf {
				switch s.liveness(sess, now) {
				case closeSilent:
					if sess.debugging() {
						sess.logger().Debug("heartbeat timeout", slog.Duration("silent", now.Sub(time.Unix(0, sess.lastSeen.Load())).Round(time.Millisecond)))
					}
					sess.close(reasonHeartbeatTimeout)
				case closeIdle:
					sess.close(reasonIdleTimeout)
				case pingNow:
					sess.ping(now)
				}
			}
			clear(buf) // drop references to closed sessions
		}
	}
}

// verdict is what the liveness check says of a session.
type verdict int

const (
	keep        verdict = iota
	pingNow             // a heartbeat is due
	closeSilent         // missed its heartbeats
	closeIdle           // a door without heartbeats, idle too long
)

// liveness judges one session at now. A session of a door with heartbeats
// silent for over 2 intervals plus a quarter is closed (the check runs
// every quarter, so a dead client is gone within 2 intervals plus a grace
// of half an interval); the others are pinged once per interval. A session
// of a door without heartbeats is closed once idle for LegacyIdleTimeout.
func (s *Server) liveness(sess *session, now time.Time) verdict {
	hb := s.cfg.Heartbeat
	silent := now.UnixNano() - sess.lastSeen.Load()
	if sess.pingless {
		if silent > s.cfg.LegacyIdleTimeout.Nanoseconds() {
			return closeIdle
		}
		return keep
	}
	if silent > (2*hb + hb/4).Nanoseconds() {
		return closeSilent
	}
	if now.UnixNano()-sess.pingSent.Load() >= (hb - hb/8).Nanoseconds() {
		return pingNow
	}
	return keep
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
		s.hbOnce.Do(func() { close(s.hbDone); close(s.pubDone); close(s.lingerDone) }) // never started
		s.stopOnce.Do(func() { close(s.hbStop) })
		<-s.hbDone
		<-s.pubDone
		<-s.lingerDone
		if p := s.poll.Load(); p != nil {
			p.close()
		}
		if ls := s.loops.Load(); ls != nil {
			ls.close()
		}
	}()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		// Connections of HTTP doors are their servers' to close; the
		// WebSocket sessions among them are in the table.
		if s.binConns.Load() == 0 && s.table.count() == 0 && s.async.Load() == 0 {
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
