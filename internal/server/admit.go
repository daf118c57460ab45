package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Admission: what a connection must pass before the server spends anything
// on it. Every check here runs on the accept path (or before a WebSocket
// upgrade) and costs a map lookup under a mutex.

// refusal says why a connection was not admitted; "" means admitted.
type refusal string

const (
	admitted         refusal = ""
	refusedTotal     refusal = "too many connections"
	refusedPerIP     refusal = "too many connections from this address"
	refusedAuthLimit refusal = "too many failed authentications from this address"
	refusedNetwork   refusal = "address not allowed on this door"
)

// maxRefusers bounds the goroutines that write a refusal and linger; past
// it a refused connection is closed without a word, so that a flood of
// connections cannot make the server spend more than this.
const maxRefusers = 64

// admission holds the per-address state of the admission checks.
type admission struct {
	mu       sync.Mutex
	perIP    map[netip.Addr]int32    // guarded by mu: open connections by address
	failures map[netip.Addr]*failLog // guarded by mu: recent failed authentications

	refusers atomic.Int32
	tokens   [][sha256.Size]byte // client tokens, hashed; immutable
	admin    *[sha256.Size]byte  // the admin token, hashed; nil when none
}

// failLog is one address's failed authentications in the current window.
type failLog struct {
	since time.Time
	n     int
}

func newAdmission(cfg Config) *admission {
	a := &admission{perIP: make(map[netip.Addr]int32), failures: make(map[netip.Addr]*failLog)}
	for _, t := range cfg.Tokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	if cfg.AdminToken != "" {
		h := sha256.Sum256([]byte(cfg.AdminToken))
		a.admin = &h
	}
	return a
}

// remoteIP is the address a connection comes from, without the port; the
// zero Addr for connections that are not TCP.
func remoteIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// admit counts a new connection from ip against the limits of every door.
// When it returns admitted, leave must be called once the connection ends.
func (s *Server) admit(ip netip.Addr, door string) refusal {
	if door == DoorLegacy && len(s.cfg.LegacyAllow) > 0 && !allowed(s.cfg.LegacyAllow, ip) {
		return refusedNetwork
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		return refusedTotal
	}
	a := s.adm
	a.mu.Lock()
	if s.blockedLocked(ip) {
		a.mu.Unlock()
		s.conns.Add(-1)
		return refusedAuthLimit
	}
	n := a.perIP[ip]
	if n >= int32(s.cfg.MaxConnsPerIP) {
		a.mu.Unlock()
		s.conns.Add(-1)
		return refusedPerIP
	}
	a.perIP[ip] = n + 1
	a.mu.Unlock()
	return admitted
}

// leave undoes a successful admit.
func (s *Server) leave(ip netip.Addr) {
	a := s.adm
	a.mu.Lock()
	if n := a.perIP[ip] - 1; n > 0 {
		a.perIP[ip] = n
	} else {
		delete(a.perIP, ip)
	}
	a.mu.Unlock()
	s.conns.Add(-1)
}

func allowed(nets []netip.Prefix, ip netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Credentials checks the token a client presented ("" for none) and
// reports whether it may connect and whether it is an admin. When client
// tokens are configured, a client must present one of them or the admin
// token. When any token is configured, a token presented must be one of
// them: a wrong token is refused even where none is required. When no token
// is configured at all, tokens are ignored. Tokens are compared as SHA-256
// digests in constant time, so neither their contents nor their lengths
// leak through timing.
func (s *Server) Credentials(loopback bool, token string) (ok, admin bool) {
	a := s.adm
	admin = s.IsAdmin(loopback, token)
	switch {
	case token == "":
		return len(a.tokens) == 0, admin
	case len(a.tokens) == 0 && a.admin == nil:
		return true, admin
	}
	h := sha256.Sum256([]byte(token))
	match := 0
	for i := range a.tokens {
		match |= subtle.ConstantTimeCompare(h[:], a.tokens[i][:])
	}
	if a.admin != nil {
		match |= subtle.ConstantTimeCompare(h[:], a.admin[:])
	}
	return match == 1, admin
}

// AuthBlocked reports whether an address has failed authentication too
// often and is refused for the rest of its window.
func (s *Server) AuthBlocked(remote string) bool {
	s.adm.mu.Lock()
	defer s.adm.mu.Unlock()
	return s.blockedLocked(remoteIP(parseAddr(remote)))
}

// blockedLocked reports whether ip is over its failure limit in the
// current window, forgetting a window that has passed. Call it with
// adm.mu held.
func (s *Server) blockedLocked(ip netip.Addr) bool {
	f := s.adm.failures[ip]
	if f == nil || f.n < s.cfg.AuthFailures {
		return false
	}
	if time.Since(f.since) < s.cfg.AuthWindow {
		return true
	}
	delete(s.adm.failures, ip)
	return false
}

// logRefusal counts a connection refused on a door and logs it, at most
// once a second.
func (s *Server) logRefusal(door, remote string, why refusal) {
	s.metrics.rejected[doorIndex(door)].Add(1)
	if s.limLog.allow(time.Now()) {
		s.log.Warn("connection refused", slog.String(keyDoor, door), slog.String(keyRemote, remote),
			slog.String(keyReason, string(why)), slog.Uint64("not_logged", s.limLog.takeSuppressed()))
	}
}

// isAdminToken compares token with the admin token in constant time.
func (a *admission) isAdminToken(token string) bool {
	if a.admin == nil {
		return false
	}
	h := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(h[:], a.admin[:]) == 1
}

// AuthFailed records a failed authentication from remote ("ip:port") on
// a door: it is counted, logged (at most once a second per server, with
// the count of those not logged), and charged to the address, which is
// refused for the rest of the window once it has failed AuthFailures times.
func (s *Server) AuthFailed(remote string, door string, why string) {
	s.metrics.authFailures[doorIndex(door)].Add(1)
	ip := remoteIP(parseAddr(remote))
	a := s.adm
	now := time.Now()
	a.mu.Lock()
	f := a.failures[ip]
	if f == nil || now.Sub(f.since) >= s.cfg.AuthWindow {
		if len(a.failures) >= maxFailureEntries {
			a.pruneFailures(now, s.cfg.AuthWindow)
		}
		if len(a.failures) < maxFailureEntries {
			f = &failLog{since: now}
			a.failures[ip] = f
		}
	}
	blocked := false
	if f != nil {
		f.n++
		blocked = f.n == s.cfg.AuthFailures
	}
	a.mu.Unlock()
	if s.authLog.allow(now) {
		s.log.Warn("authentication failed", slog.String(keyDoor, door), slog.String(keyRemote, remote),
			slog.String(keyReason, why), slog.Bool("address_blocked", blocked), slog.Uint64("not_logged", s.authLog.takeSuppressed()))
	}
}

// maxFailureEntries bounds the failed-authentication table; when it is
// full of live entries, further addresses are not tracked (but still
// refused, counted and logged).
const maxFailureEntries = 1 << 16

func (a *admission) pruneFailures(now time.Time, window time.Duration) {
	for ip, f := range a.failures {
		if now.Sub(f.since) >= window {
			delete(a.failures, ip)
		}
	}
}

// logLimiter lets one log line through per second and counts the others,
// so that a flood of refusals cannot flood the log.
type logLimiter struct {
	last       atomic.Int64 // unix ns of the last line let through
	suppressed atomic.Uint64
}

func (l *logLimiter) allow(now time.Time) bool {
	last := l.last.Load()
	if now.UnixNano()-last < int64(time.Second) || !l.last.CompareAndSwap(last, now.UnixNano()) {
		l.suppressed.Add(1)
		return false
	}
	return true
}

func (l *logLimiter) takeSuppressed() uint64 { return l.suppressed.Swap(0) }
