// Package web is nexo's web door (spec section 3): the browser GUI at /,
// the JavaScript client at /nexo.js, JSON-RPC 2.0 over POST /rpc, and
// JSON-RPC over a WebSocket at /ws, all on the server's one registry.
package web

import (
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"time"

	jsclient "github.com/nexo-project/nexo/clients/js"
	"github.com/nexo-project/nexo/internal/jsonrpc"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/service"
)

//go:embed gui
var guiFiles embed.FS

// Options configure the web door.
type Options struct {
	Server   *server.Server
	Registry *service.Registry
	// OriginPatterns are the foreign origins allowed to open a WebSocket;
	// see server.WebSocketOptions. Same-origin is always allowed.
	OriginPatterns []string
	// RequestTimeout bounds each JSON-RPC call (0: the server's default).
	RequestTimeout time.Duration
}

// Refusals of a POST /rpc (401 with this text).
var (
	errWrongToken = errors.New("invalid or missing token")
	errAuthLimit  = errors.New("too many failed authentications from this address")
)

// Handler returns the web door's handler.
func Handler(o Options) http.Handler {
	timeout := o.RequestTimeout
	if timeout == 0 {
		timeout = o.Server.Config().RequestTimeout
	}
	rpc := jsonrpc.NewRPC(o.Registry, timeout)
	rpc.Observe = o.Server.Observe
	srv := o.Server
	who := func(r *http.Request) (*service.Caller, error) {
		if srv.AuthBlocked(r.RemoteAddr) {
			return nil, errAuthLimit
		}
		token, _ := server.RequestToken(r)
		lb := jsonrpc.IsLoopback(r.RemoteAddr)
		ok, admin := srv.Credentials(lb, token)
		if !ok {
			srv.AuthFailed(r.RemoteAddr, server.DoorHTTP, "invalid or missing token")
			return nil, errWrongToken
		}
		return &service.Caller{Door: server.DoorHTTP, Remote: r.RemoteAddr, Loopback: lb, Admin: admin,
			Identity: server.RequestIdentity(r)}, nil
	}
	gui, _ := fs.Sub(guiFiles, "gui") // the directory is embedded: cannot fail
	mux := http.NewServeMux()
	mux.Handle("/rpc", rpc.Handler(who)) // every method: wrong ones get 405 with Allow
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		srv.ServeWebSocket(w, r, rpc, server.WebSocketOptions{OriginPatterns: o.OriginPatterns})
	})
	mux.HandleFunc("GET /nexo.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeContent(w, r, "nexo.js", time.Time{}, jsclient.Reader())
	})
	mux.Handle("/", http.FileServerFS(gui))
	return secure(mux)
}

// secure sets the headers every response of the web door carries: the
// GUI loads nothing from elsewhere and may not be framed.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}
