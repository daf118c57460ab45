package server

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/wire"
)

// The cores Config.Core names.
const (
	CoreLoop      = "loop"
	CoreGoroutine = "goroutine"
)

// Config holds the server's settings. The zero value of a field means its
// default; DefaultConfig returns every default filled in.
type Config struct {
	// Version is reported in WELCOME ("nexo/<Version>") and sys.info.
	Version string
	// Tracer, when set, makes each request a span, child of the trace
	// context the request carried (see internal/tracing). Nil is tracing
	// off, which costs the request path nothing.
	Tracer trace.Tracer
	// Core is how plain-TCP native connections are served once their
	// handshake is done: CoreLoop (the default) on a few event loops,
	// where the system has them (Linux), or CoreGoroutine, a reader
	// goroutine per busy connection. TLS connections and the other doors
	// always have goroutines.
	Core string
	// Loops is the number of event loops (default: one per core,
	// GOMAXPROCS).
	Loops int
	// Heartbeat is the PING interval announced in WELCOME (default 5s). A
	// native client silent for 2 intervals plus a grace of half an interval
	// is closed.
	Heartbeat time.Duration
	// MaxFrame is the largest frame length accepted (default 1 MiB).
	MaxFrame int
	// MaxConns bounds open connections over all doors (default 10000);
	// past it a new connection is answered BUSY and closed.
	MaxConns int
	// MaxConnsPerIP bounds open connections from one remote address over
	// all doors (default 1000); past it a new connection is answered BUSY.
	MaxConnsPerIP int
	// MaxInFlight bounds concurrent requests per connection (default 1024);
	// past it a request is answered BUSY.
	MaxInFlight int
	// MaxInFlightTotal bounds the requests served on goroutines of their
	// own, server-wide (default 50000); past it a request is answered BUSY.
	MaxInFlightTotal int
	// MaxInFlightBytes bounds the bytes that the requests one connection
	// has running beside its reader hold (their payloads, or a WebSocket's
	// messages): default 4 MiB, and never less than one max frame, which
	// is always let through alone. Past it a request is answered BUSY.
	MaxInFlightBytes int
	// HandshakeTimeout bounds the wait for HELLO (default 5s).
	HandshakeTimeout time.Duration
	// RequestTimeout applies to requests without a DEADLINE (default 30s).
	RequestTimeout time.Duration
	// WriteTimeout closes a connection whose writes stall that long, as a
	// slow consumer (default 10s).
	WriteTimeout time.Duration
	// MaxPending closes a connection whose unsent output passes this many
	// bytes, as a slow consumer (default 4 MiB, at least 2 max frames).
	MaxPending int
	// LegacyIdleTimeout closes a legacy connection silent that long
	// (default 5m): legacy clients cannot answer heartbeats.
	LegacyIdleTimeout time.Duration
	// Linger is how long a closing connection waits for the peer to close
	// after the last byte is sent, so that no reset destroys it (default 2s).
	Linger time.Duration
	// ClosedHistory is how many recently closed sessions are kept (default 256).
	ClosedHistory int
	// AdminToken, when set, is what a client must present to be an admin
	// (HELLO token, "Authorization: Bearer", or the WebSocket token
	// parameter). When empty, clients connecting from loopback are admins.
	AdminToken string
	// Tokens, when not empty, are the client tokens: a native or web client
	// must present one of them (or the admin token), or it is refused with
	// UNAUTHORIZED. The legacy door cannot carry a token; see LegacyAllow.
	Tokens []string
	// AuthFailures is how many failed authentications an address may make
	// per AuthWindow (default 5), each answered after a growing delay; past
	// it, the address's tokens are checked at most once a second until the
	// window has passed (see Authenticate).
	AuthFailures int
	// AuthWindow is the period of AuthFailures (default 1m).
	AuthWindow time.Duration
	// LegacyAllow, when not empty, is the list of networks the legacy door
	// accepts connections from; others are closed at once.
	LegacyAllow []netip.Prefix
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		Version:           "0.1.0",
		Core:              CoreLoop,
		Heartbeat:         5 * time.Second,
		MaxFrame:          wire.DefaultMaxFrame,
		MaxConns:          10000,
		MaxConnsPerIP:     1000,
		MaxInFlight:       1024,
		MaxInFlightTotal:  50000,
		MaxInFlightBytes:  4 << 20,
		AuthFailures:      5,
		AuthWindow:        time.Minute,
		HandshakeTimeout:  5 * time.Second,
		RequestTimeout:    30 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxPending:        4 << 20,
		LegacyIdleTimeout: 5 * time.Minute,
		Linger:            2 * time.Second,
		ClosedHistory:     256,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.Core == "" {
		c.Core = d.Core
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.MaxConns == 0 {
		c.MaxConns = d.MaxConns
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.MaxInFlightTotal == 0 {
		c.MaxInFlightTotal = d.MaxInFlightTotal
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = d.MaxInFlightBytes
	}
	if c.AuthFailures == 0 {
		c.AuthFailures = d.AuthFailures
	}
	if c.AuthWindow == 0 {
		c.AuthWindow = d.AuthWindow
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MaxPending == 0 {
		c.MaxPending = max(d.MaxPending, 2*(c.MaxFrame+wire.HeaderLen))
	}
	if c.LegacyIdleTimeout == 0 {
		c.LegacyIdleTimeout = d.LegacyIdleTimeout
	}
	if c.Linger == 0 {
		c.Linger = d.Linger
	}
	if c.ClosedHistory == 0 {
		c.ClosedHistory = d.ClosedHistory
	}
	return c
}

// Validate reports the first setting that cannot work, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Heartbeat < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat %v is below 10ms", c.Heartbeat))
	}
	if c.MaxFrame < 64 || c.MaxFrame > 64<<20 {
		errs = append(errs, fmt.Errorf("max frame %d is outside 64..%d", c.MaxFrame, 64<<20))
	}
	if c.Core != CoreLoop && c.Core != CoreGoroutine {
		errs = append(errs, fmt.Errorf("core %q is neither %q nor %q", c.Core, CoreLoop, CoreGoroutine))
	}
	if c.Loops < 0 || c.Loops > 1024 {
		errs = append(errs, fmt.Errorf("loops %d is outside 0..1024 (0: one per core)", c.Loops))
	}
	if c.MaxPending < c.MaxFrame+wire.HeaderLen {
		errs = append(errs, fmt.Errorf("max pending %d is below one max frame", c.MaxPending))
	}
	// Slices, not maps, so that the errors always come in the same order.
	for _, f := range []struct {
		name string
		v    int
	}{{"max conns", c.MaxConns}, {"max conns per IP", c.MaxConnsPerIP}, {"max in-flight", c.MaxInFlight},
		{"max in-flight total", c.MaxInFlightTotal}, {"max in-flight bytes", c.MaxInFlightBytes}, {"auth failures", c.AuthFailures}, {"closed history", c.ClosedHistory}} {
		if f.v < 1 {
			errs = append(errs, fmt.Errorf("%s %d is below 1", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"handshake timeout", c.HandshakeTimeout}, {"request timeout", c.RequestTimeout},
		{"write timeout", c.WriteTimeout}, {"legacy idle timeout", c.LegacyIdleTimeout}, {"linger", c.Linger},
		{"auth window", c.AuthWindow}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", f.name, f.v))
		}
	}
	for i, t := range c.Tokens {
		if t == "" {
			errs = append(errs, fmt.Errorf("client token %d is empty", i+1))
		}
	}
	return errors.Join(errs...)
}
