// Package web is nexo's web door (spec section 3): the browser GUI at /,
// the JavaScript client at /nexo.js, JSON-RPC 2.0 over POST /rpc, and
// JSON-RPC over a WebSocket at /ws (ws.go), all on the server's one
// registry and, for /ws, its session core.
package web

import (
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"time"

	jsclient "github.com/nexo-project/nexo/clients/js"
	"github.com/nexo-project/nexo/internal/httpguard"
	"github.com/nexo-project/nexo/internal/jsonrpc"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/service"
)

//go:embed gui
var guiFiles embed.FS

// Options configure the web door.
type Options struct {
	Server *server.Server
	// Listen is the door's listen address: requests may name its IP in
	// their Host header (see httpguard.Policy).
	Listen string
	// Hosts are more host names requests may name in Host; others get 421.
	Hosts []string
	// OriginPatterns are the other origins whose pages may call the door
	// (POST /rpc, /ws): "https://app.example.com", or host patterns
	// ("example.com", "*.example.com:8443") of any scheme. The page's own
	// origin (scheme, host and port) is always allowed; a foreign one is
	// refused with 403.
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
	srv.AddUpgradeDoor(DoorWS)
	srv.AddDoor(DoorHTTP)
	rpc := jsonrpc.NewRPC(srv.Registry(), timeout)
	rpc.Observe = srv.Observe
	rpc.Version = srv.Config().Version
	rpc.Tracer = srv.Config().Tracer
	rpc.Tap = monitorTap{srv}
	who := func(r *http.Request) (*service.Caller, error) {
		token, _ := server.RequestToken(r)
		admin, err := srv.Authenticate(r.RemoteAddr, token, DoorHTTP)
		if errors.Is(err, server.ErrAuthLimit) {
			return nil, &jsonrpc.StatusError{Status: http.StatusTooManyRequests, Err: err}
		}
		if err != nil {
			return nil, err
		}
		return &service.Caller{Door: DoorHTTP, Remote: r.RemoteAddr, Loopback: server.IsLoopback(r.RemoteAddr), Admin: admin,
			Identity: server.RequestIdentity(r)}, nil
	}
	guard := &httpguard.Policy{Listen: o.Listen, Hosts: o.Hosts, Origins: o.OriginPatterns}
	ws := &wsDoor{srv: srv, rpc: rpc, guard: guard, log: o.Log}
	gui, _ := fs.Sub(guiFiles, "gui") // the directory is embedded: cannot fail
	mux := http.NewServeMux()
	mux.Handle("/rpc", sameSite(guard, bodyWithin(srv.Config().HandshakeTimeout, rpc.Handler(who)))) // every method: wrong ones get 405 with Allow
	mux.HandleFunc("GET /ws", ws.serve)
	mux.HandleFunc("GET /nexo.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeContent(w, r, "nexo.js", time.Time{}, jsclient.Reader())
	})
	mux.Handle("GET /favicon.ico", http.RedirectHandler("/favicon.svg", http.StatusMovedPermanently))
	mux.Handle("/", http.FileServerFS(gui))
	return guard.Host(secure(mux))
}

// bodyWithin gives a request d to send its body, as a WebSocket message
// has d to arrive whole: a body dribbled slowly is cut off with 400
// instead of holding the connection for the server's whole ReadTimeout.
func bodyWithin(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}

// sameSite refuses the POSTs a page of another origin could make without
// the browser asking first: any body that is not declared JSON gets 415
// (a page can send text/plain, a form or no type without a CORS preflight;
// a JSON one needs the preflight, which nothing here answers), and a
// request whose Origin or Sec-Fetch-Site says it comes from another
// origin's page gets 403, unless that origin is allowed.
func sameSite(guard *httpguard.Policy, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if ct := r.Header.Get("Content-Type"); ct != "application/json" && !isJSONType(ct) {
				http.Error(w, "send the JSON-RPC body with Content-Type: application/json", http.StatusUnsupportedMediaType)
				return
			}
			if guard.Foreign(r) {
				http.Error(w, "requests from another origin's page are refused", http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// isJSONType reports whether a Content-Type is JSON's, with any
// parameters ("application/json; charset=utf-8").
func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// The values of the headers every response of the web door carries, shared
// by every response (no copy per request): net/http only reads them, and a
// handler that sets one replaces the slice (each is full: an Add copies).
var (
	csp         = []string{"default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}
	nosniff     = []string{"nosniff"}
	noReferrer  = []string{"no-referrer"}
	denyFraming = []string{"DENY"}
)

// secure sets the headers the web door's responses carry: every one says
// nosniff, so that no browser takes an answer for another type than it
// says (a JSON-RPC answer for a page or a script); and every one but
// POST /rpc's, which are JSON or plain text and never a document a browser
// renders, says that the GUI loads nothing from elsewhere, may not be
// framed and sends no referrer.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["X-Content-Type-Options"] = nosniff
		if r.URL.Path != "/rpc" {
			hd["Content-Security-Policy"] = csp
			hd["Referrer-Policy"] = noReferrer
			hd["X-Frame-Options"] = denyFraming
		}
		h.ServeHTTP(w, r)
	})
}
