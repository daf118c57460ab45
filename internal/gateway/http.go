package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/nexo-project/nexo/internal/service"
)

// MaxBody bounds a POST /rpc body.
const MaxBody = 1 << 20

// Handler serves POST /rpc. Each HTTP request is a stateless caller with
// door "http"; it is not listed as a client.
func (r *RPC) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc", r.serveHTTP)
	mux.HandleFunc("/rpc", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", "POST")
		http.Error(w, "use POST with a JSON-RPC 2.0 body", http.StatusMethodNotAllowed)
	})
	return mux
}

func (r *RPC) serveHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBody))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			http.Error(w, "body over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	caller := &service.Caller{Door: "http", Remote: req.RemoteAddr, Loopback: isLoopback(req.RemoteAddr)}
	out := r.Handle(req.Context(), caller, body)
	if out == nil {
		w.WriteHeader(http.StatusNoContent) // notifications only: nothing to answer
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(out, '\n')) // a client that hung up gets nothing; nothing to do
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
