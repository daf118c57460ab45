// Package web is nexo's web door (spec section 3): the browser GUI at /,
// the JavaScript client at /nexo.js, JSON-RPC 2.0 over POST /rpc, and
// JSON-RPC over a WebSocket at /ws (ws.go), all on the server's one
// registry and, for /ws, its session core.
package web

import (
	"embed"
	"io/fs"
	"log/slog"
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
	Server *server.Server
	// OriginPatterns are the other origins whose pages may open a
	// WebSocket, as host patterns ("example.com", "*.example.com:8443").
	// The page's own origin is always allowed; a foreign one is refused
	// with 403.
	OriginPatterns []string
	// RequestTimeout bounds each JSON-RPC call (0: the server's default).
	RequestTimeout time.Duration
	Log            *slog.Logger // nil discards
}

// Handler returns the web door's handler.
func Handler(o Options) http.Handler {
	srv := o.Server
	timeout := o.RequestTimeout
	if timeout == 0 {
		timeout = srv.Config().RequestTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	srv.AddDoor(DoorWS)
	srv.AddDoor(DoorHTTP)
	rpc := jsonrpc.NewRPC(srv.Registry(), timeout)
	rpc.Observe = srv.Observe
	who := func(r *http.Request) (*service.Caller, error) {
		token, _ := server.RequestToken(r)
		admin, err := srv.Authenticate(r.RemoteAddr, token, DoorHTTP)
		if err != nil {
			return nil, err
		}
		return &service.Caller{Door: DoorHTTP, Remote: r.RemoteAddr, Loopback: server.IsLoopback(r.RemoteAddr), Admin: admin,
			Identity: server.RequestIdentity(r)}, nil
	}
	ws := &wsDoor{srv: srv, rpc: rpc, origins: o.OriginPatterns, log: o.Log}
	gui, _ := fs.Sub(guiFiles, "gui") // the directory is embedded: cannot fail
	mux := http.NewServeMux()
	mux.Handle("/rpc", rpc.Handler(who)) // every method: wrong ones get 405 with Allow
	mux.HandleFunc("GET /ws", ws.serve)
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
