package server

import (
	"bufio"
	"context"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// BearerToken returns the token of an "Authorization: Bearer" header, and
// whether the request has an Authorization header at all. A header that
// is not a bearer token is returned whole: it is a token presented, which
// matches none (a wrong token is refused even where none is required).
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && tok != "" {
		return tok, true
	}
	return h, true
}

// RequestToken returns the token an HTTP request carries, from
// "Authorization: Bearer" or, for a WebSocket (browsers cannot set its
// headers), the query parameter token, and whether it carries one.
func RequestToken(r *http.Request) (string, bool) {
	if tok, ok := BearerToken(r); ok {
		return tok, true
	}
	if r.URL.RawQuery == "" { // most requests: no map to parse
		return "", false
	}
	if q := r.URL.Query(); q.Has("token") {
		return q.Get("token"), true
	}
	return "", false
}

// RequestIdentity returns the subject of the verified client certificate
// of an HTTPS request (mutual TLS), or "".
func RequestIdentity(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return r.TLS.VerifiedChains[0][0].Subject.String()
	}
	return ""
}

// HTTPServer returns the http.Server of an HTTP door (web, admin) with
// nexo's limits: 5 s to send the headers, 64 KiB of them, 30 s for a whole
// request, 60 s to write an answer, and an idle keep-alive connection,
// which holds a slot of --max-conns, closed after 15 s. It counts, by
// door, the requests answered with a 4xx status (a hostile page or a
// rebinding attempt shows in the metrics, not only in its victim's
// browser), and the connections closed before any request reached the
// handler (headers too slow, too large or malformed: net/http answers
// those itself).
func (s *Server) HTTPServer(door string, h http.Handler, errorLog *log.Logger) *http.Server {
	d := s.metrics.door(door)
	var conns sync.Map // net.Conn -> *atomic.Bool: a request reached the handler
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if served, ok := r.Context().Value(servedKey{}).(*atomic.Bool); ok {
				served.Store(true)
			}
			h.ServeHTTP(&statusWriter{ResponseWriter: w, door: d}, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       15 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			served := new(atomic.Bool)
			conns.Store(c, served)
			return context.WithValue(ctx, servedKey{}, served)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateClosed && st != http.StateHijacked {
				return
			}
			if v, ok := conns.LoadAndDelete(c); ok && !v.(*atomic.Bool).Load() {
				d.unserved.Add(1)
			}
		},
	}
}

// servedKey is the context key of a connection's served flag.
type servedKey struct{}

// statusWriter counts the status a response begins with.
type statusWriter struct {
	http.ResponseWriter
	door    *doorStats
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.written = true
		if code >= 400 && code < 500 {
			w.door.http4xx[code-400].Add(1)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes on, for streamed answers.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Hijack passes on, for the WebSocket upgrade.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.written = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
