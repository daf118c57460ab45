// Package backplane joins nexo processes over NATS, an existing message
// system, so that one service registry can span many machines:
//
//   - a gateway (nexo serve --nats) holds client connections and forwards
//     the methods it does not serve itself to NATS subjects
//     "<prefix>.svc.<method>" (Gateway, Forwarder);
//   - a worker (nexo worker) serves its registry's methods on those
//     subjects in a queue group, as a NATS micro service, so the load
//     spreads over the workers and "nats micro ls" lists them (Worker);
//   - every gateway answers "<prefix>.admin.clients" and
//     "<prefix>.admin.stats", so any gateway can show the whole cluster
//     (Gateway.Cluster).
//
// The message format is plain NATS: the request payload is the method's
// binary payload, the deadline travels in the Nexo-Deadline header, and an
// error comes back in the micro headers Nats-Service-Error-Code (the
// protocol's numeric code) and Nats-Service-Error. docs/scaling.md has the
// whole design.
package backplane

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nexo-project/nexo/wire"
)

// Header names and micro service names of the message format.
const (
	// DeadlineHeader carries the request's deadline as Unix milliseconds.
	// Gateway and worker clocks should agree (NTP); skew shortens or
	// lengthens the time a worker allows.
	DeadlineHeader = "Nexo-Deadline"
	// WorkerService is the micro service name of workers.
	WorkerService = "nexo-worker"
	// GatewayService is the micro service name of gateways.
	GatewayService = "nexo-gateway"
	// DefaultPrefix is the subject prefix: services under "nexo.svc.",
	// gateway queries under "nexo.admin.".
	DefaultPrefix = "nexo"
	// QueueGroup is the queue group workers share, so that each request
	// goes to one of them.
	QueueGroup = "nexo"
)

// Subjects derives the subjects of one nexo cluster from its prefix, so
// that several clusters can share a NATS system.
type Subjects struct {
	Prefix string
}

// Service returns the subject of a method.
func (s Subjects) Service(method string) string { return s.Prefix + ".svc." + method }

// Admin returns the subject of a gateway query ("clients", "stats").
func (s Subjects) Admin(query string) string { return s.Prefix + ".admin." + query }

// CheckPrefix reports whether prefix is usable as the start of subjects:
// dot-separated tokens without wildcards or white space.
func CheckPrefix(prefix string) error {
	if !validSubject(prefix) {
		return fmt.Errorf("NATS subject prefix %q: want dot-separated tokens of printable characters, without * or >", prefix)
	}
	return nil
}

// validSubject reports whether s is a publishable NATS subject.
func validSubject(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// ConnectOptions configure a connection to NATS.
type ConnectOptions struct {
	URL   string // nats://host:4222, comma-separated for a cluster
	Name  string // shown by the NATS server's monitoring
	Creds string // a NATS credentials file; user, password or token may also be in the URL
	Log   *slog.Logger
}

// Connect connects to NATS for a gateway or a worker. The connection
// retries forever, also when NATS is not up yet, and keeps nothing while
// disconnected: a publish then fails at once, so that requests get
// UNAVAILABLE instead of waiting in a buffer.
func Connect(o ConnectOptions) (*nats.Conn, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("nats", o.URL))
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connected", slog.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() { // closed on purpose (a drain): nothing to reconnect
				log.Debug("NATS connection closed")
				return
			}
			log.Warn("NATS disconnected; reconnecting", slog.Any("err", err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", slog.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("NATS error", slog.String("subject", subj), slog.Any("err", err))
		}),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS %s: %w", o.URL, err)
	}
	if !nc.IsConnected() { // the first attempt failed; it goes on trying
		log.Warn("NATS not reachable yet; trying every 250 ms to 1 s (NATS connected follows when it is)")
	}
	return nc, nil
}

// WaitConnected waits until nc is connected, or ctx ends.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("NATS not connected: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
	return nil
}

// deadline reads the Nexo-Deadline header.
func deadline(h micro.Headers) (time.Time, bool) {
	v := h.Get(DeadlineHeader)
	if v == "" {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// replyError turns an error reply's micro headers into the protocol error
// the worker sent; ok is false for a normal reply.
func replyError(h nats.Header) (err error, ok bool) {
	v := h.Get(micro.ErrorCodeHeader)
	if v == "" {
		return nil, false
	}
	n, perr := strconv.Atoi(v)
	code := wire.Code(n)
	if perr != nil || n <= 0 || n > 0xffff || !code.Answerable() {
		// A worker of another version, or not nexo: neither its code nor
		// its words are for the client.
		return &wire.Error{Code: wire.CodeInternal, Msg: "a worker answered code " + strconv.Quote(v)}, true
	}
	return &wire.Error{Code: code, Msg: h.Get(micro.ErrorHeader)}, true
}

// errCode is the micro error code sent for err: the protocol's number.
func errCode(code wire.Code) string { return strconv.Itoa(int(code)) }
