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

	"github.com/nexo-project/nexo/wire"
)

// Admission and authentication: what a connection or a request must pass
// before the server spends anything on it, the same for every door and for
// the admin listener. Each check costs a map lookup under a mutex.

// RefusedError says why a connection was not admitted, with the code a
// door that can answer says it with.
type RefusedError struct {
	Code   wire.Code
	Reason string
}

func (e *RefusedError) Error() string { return e.Reason }

// Why connections are refused.
var (
	ErrTooManyConns = &RefusedError{wire.CodeBusy, "too many connections"}
	ErrTooManyPerIP = &RefusedError{wire.CodeBusy, "too many connections from this address"}
	// ErrAuthLimit refuses, without looking at its token, an attempt from
	// an address over its failed-authentication limit while another of its
	// attempts was checked less than a second ago.
	ErrAuthLimit = &RefusedError{wire.CodeUnauthorized, "too many failed authentications from this address"}
	// ErrBadToken refuses a wrong or missing token.
	ErrBadToken = &RefusedError{wire.CodeUnauthorized, "invalid or missing token"}

	refusedNetwork = &RefusedError{wire.CodeUnauthorized, "address not allowed on this door"}
)

// maxRefusers bounds the goroutines that write a refusal and linger; past
// it a refused connection is closed without a word, so that a flood of
// connections cannot make the server spend more than this.
const maxRefusers = 64

// admission holds the per-address state of the admission checks.
type admission struct {
	mu       sync.Mutex
	perIP    map[netip.Addr]int32    // guarded by mu: open connections by address
	failures map[netip.Addr]*failLog // guarded by mu: recent failed authentications, by failKey
	overflow failLog                 // guarded by mu: the failures of addresses the full table cannot hold
	pruned   time.Time               // guarded by mu: the last prune of a full table

	refusers atomic.Int32
	tokens   [][sha256.Size]byte // client tokens, hashed; immutable
	admin    *[sha256.Size]byte  // the admin token, hashed; nil when none
	authLog  logLimiter          // failed authentications
	limLog   logLimiter          // connections refused over a limit
	now      func() time.Time    // the clock of the failure windows; tests inject theirs
	sleep    func(time.Duration) // how a failure is slowed; tests inject theirs
}

// failLog is one address's failed authentications in the current window.
type failLog struct {
	since time.Time
	n     int
	next  time.Time // over the limit: when a token from this address may be checked again
}

// The failure rule. Each failed authentication from an address is
// answered after a delay that doubles with the address's failures in the
// window (authDelay, 200 ms, ... up to the limit). Past AuthFailures, the
// address's tokens are checked at most once every authCheckEvery: other
// attempts meanwhile are refused at once without a look. A correct token
// always gets in when it is checked, so a client that fails does not lock
// out the others behind the same address (a NAT, a proxy, loopback); it
// only slows them, while guessing stays at one token a second.
const (
	authDelay      = 100 * time.Millisecond
	authDelayMax   = 2 * time.Second
	authCheckEvery = time.Second
)

func newAdmission(cfg Config) *admission {
	a := &admission{perIP: make(map[netip.Addr]int32), failures: make(map[netip.Addr]*failLog), now: time.Now, sleep: time.Sleep}
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

// ParseRemote parses a remote address as HTTP gives it ("ip:port") into
// its IP, the zero Addr when it is not one.
func ParseRemote(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("") // remoteIP's key: zones are not told apart
}

// IsLoopback reports whether a remote address ("ip:port") is a loopback
// one: the one loopback check of every door.
func IsLoopback(remote string) bool { return ParseRemote(remote).IsLoopback() }

func isLoopback(a net.Addr) bool { return remoteIP(a).IsLoopback() }

// Admit counts a new connection from ip on a door against the server's
// limits: open connections in all, and from this address (failed
// authentications are Authenticate's, per attempt). When it returns nil, the door must
// call Leave once the connection ends, and Accepted or Rejected once it
// knows whether it serves it. Every door admits through it.
func (s *Server) Admit(ip netip.Addr, door string) *RefusedError {
	if why := s.admit(ip); why != nil {
		s.logRefusal(s.metrics.door(door), ip.String(), why)
		return why
	}
	return nil
}

// Accepted counts a connection admitted on a door that the door serves.
func (s *Server) Accepted(door string) { s.metrics.door(door).accepted.Add(1) }

// Rejected counts a connection admitted on a door that the door refused
// afterwards (a WebSocket upgrade that failed).
func (s *Server) Rejected(door string) { s.metrics.door(door).rejected.Add(1) }

func (s *Server) admit(ip netip.Addr) *RefusedError {
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		return ErrTooManyConns
	}
	a := s.adm
	a.mu.Lock()
	n := a.perIP[ip]
	if n >= int32(s.cfg.MaxConnsPerIP) {
		a.mu.Unlock()
		s.conns.Add(-1)
		return ErrTooManyPerIP
	}
	a.perIP[ip] = n + 1
	a.mu.Unlock()
	return nil
}

// leaveBinary is Leave for a connection of a binary door's accept loop.
func (s *Server) leaveBinary(c net.Conn) {
	s.Leave(remoteIP(c.RemoteAddr()))
	s.binConns.Add(-1)
}

// Leave undoes a successful Admit.
func (s *Server) Leave(ip netip.Addr) {
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

// Authenticate is the one authentication of a client, on every door: it
// checks the token a client presented ("" for none) from remote ("ip:port")
// and reports whether the client is an admin. A token that does not pass
// is refused with ErrBadToken, charged to the address and slowed as the
// failure rule above says; an attempt from an address over its limit that
// may not be checked yet is refused with ErrAuthLimit.
//
// When client tokens are configured, a client must present one of them or
// the admin token. When any token is configured, a token presented must be
// one of them: a wrong token is refused even where none is required. When
// no token is configured at all, tokens are ignored. A client is an admin
// when it presented the admin token, or when no admin token is configured
// and it connects from loopback.
func (s *Server) Authenticate(remote, token, door string) (admin bool, err error) {
	ip := ParseRemote(remote)
	a := s.adm
	if !s.mayCheck(ip) {
		s.metrics.door(door).authFailures.Add(1)
		return false, ErrAuthLimit
	}
	isAdmin, isClient := a.match(token)
	ok := true
	switch {
	case token == "":
		ok = len(a.tokens) == 0
	case len(a.tokens) > 0 || a.admin != nil:
		ok = isAdmin || isClient
	}
	if !ok {
		s.failed(remote, ip, door, "invalid or missing token")
		return false, ErrBadToken
	}
	if a.admin == nil {
		return ip.IsLoopback(), nil
	}
	return isAdmin, nil
}

// AuthenticateAdmin is Authenticate for the admin listener: when an admin
// token is configured, the request must present it; without one, the
// listener's own address is its protection (loopback by default).
func (s *Server) AuthenticateAdmin(remote, token, door string) error {
	if s.adm.admin == nil {
		return nil
	}
	admin, err := s.Authenticate(remote, token, door)
	if err == nil && !admin {
		s.failed(remote, ParseRemote(remote), door, "not the admin token")
		return ErrBadToken
	}
	return err
}

// match compares a token with the admin token and the client tokens, as
// SHA-256 digests in constant time, so that neither their contents nor
// their lengths leak through timing.
func (a *admission) match(token string) (admin, client bool) {
	if token == "" {
		return false, false
	}
	h := sha256.Sum256([]byte(token))
	c := 0
	for i := range a.tokens {
		c |= subtle.ConstantTimeCompare(h[:], a.tokens[i][:])
	}
	return a.admin != nil && subtle.ConstantTimeCompare(h[:], a.admin[:]) == 1, c == 1
}

// isAdmin reports whether a caller that presented no token is an admin.
func (s *Server) isAdmin(loopback bool, token string) bool {
	admin, _ := s.adm.match(token)
	return admin || (s.adm.admin == nil && loopback)
}

// mayCheck reports whether a token from ip may be checked now: always,
// unless the address is over its failure limit in the current window;
// then once every authCheckEvery. A window that has passed is forgotten.
func (s *Server) mayCheck(ip netip.Addr) bool {
	a := s.adm
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.entry(failKey(ip))
	switch {
	case f == nil || f.n < s.cfg.AuthFailures:
		return true
	case now.Sub(f.since) >= s.cfg.AuthWindow:
		*f = failLog{} // a window that has passed is forgotten
		return true
	case now.Before(f.next):
		return false
	}
	f.next = now.Add(authCheckEvery)
	return true
}

// failed charges a failed authentication to its address and slows the
// answer: authDelay, doubled with each failure of the window up to the
// limit, at most authDelayMax. Past the limit the check rate bounds the
// failures, and they are answered at once.
func (s *Server) failed(remote string, ip netip.Addr, door string, why string) {
	if n := s.authFailed(remote, ip, door, why); n >= 1 && n <= s.cfg.AuthFailures {
		s.adm.sleep(min(authDelay<<min(n-1, 16), authDelayMax))
	}
}

// logRefusal counts a connection refused on a door and logs it, at most
// once a second.
func (s *Server) logRefusal(d *doorStats, remote string, why *RefusedError) {
	d.rejected.Add(1)
	if l := &s.adm.limLog; l.allow(time.Now()) {
		s.log.Warn("connection refused", slog.String(keyDoor, d.name), slog.String(keyRemote, remote),
			slog.String(keyReason, why.Reason), slog.Uint64("not_logged", l.takeSuppressed()))
	}
}

// authFailed records a failed authentication from ip on a door: it is
// counted, logged (at most once a second per server, with the count of
// those not logged), and charged to the address. It returns the address's
// failures in the current window (0 when the table is full and the address
// is not tracked).
func (s *Server) authFailed(remote string, ip netip.Addr, door string, why string) int {
	s.metrics.door(door).authFailures.Add(1)
	a := s.adm
	now := a.now()
	a.mu.Lock()
	key := failKey(ip)
	f := a.entry(key)
	if f == nil {
		f = &failLog{}
		if len(a.failures) >= maxFailureEntries && now.Sub(a.pruned) >= time.Second {
			a.pruned = now
			a.pruneFailures(now, s.cfg.AuthWindow)
		}
		if len(a.failures) < maxFailureEntries {
			a.failures[key] = f
		} else {
			f = &a.overflow // full: addresses not held share one entry, which fails closed
		}
	}
	if f.n == 0 || now.Sub(f.since) >= s.cfg.AuthWindow {
		*f = failLog{since: now}
	}
	f.n++
	n := f.n
	a.mu.Unlock()
	if a.authLog.allow(now) {
		s.log.Warn("authentication failed", slog.String(keyDoor, door), slog.String(keyRemote, remote),
			slog.String(keyReason, why), slog.Int("failures", n), slog.Bool("over_limit", n >= s.cfg.AuthFailures),
			slog.Uint64("not_logged", a.authLog.takeSuppressed()))
	}
	return n
}

// maxFailureEntries bounds the failed-authentication table. When it is
// full of live entries, the addresses it cannot hold share one entry,
// so that the rule holds for them together (it fails closed), and a full
// table is pruned at most once a second, not on every failure.
const maxFailureEntries = 1 << 16

// failKey is the key of an address in the failure table: the address, or
// for IPv6 its /64, which one host usually holds whole (one entry per
// address would give it 2^64 fresh starts).
func failKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// entry returns the failures of key: its own entry, or, when the table is
// full and does not hold it, the shared overflow entry while that has any;
// nil when it has none. Call it with mu held.
func (a *admission) entry(key netip.Addr) *failLog {
	if f := a.failures[key]; f != nil {
		return f
	}
	if len(a.failures) >= maxFailureEntries && a.overflow.n > 0 {
		return &a.overflow
	}
	return nil
}

func (a *admission) pruneFailures(now time.Time, window time.Duration) {
	for ip, f := range a.failures {
		if f.n == 0 || now.Sub(f.since) >= window {
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
