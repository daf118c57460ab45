package jsonrpc

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/service"
)

// MaxBody bounds a POST /rpc body.
const MaxBody = 1 << 20

// CallerFunc tells who sent an HTTP request. An error refuses the request
// with 401 Unauthorized and the error's text, or with the status of a
// *StatusError.
type CallerFunc func(*http.Request) (*service.Caller, error)

// StatusError refuses a request with an HTTP status of its own.
type StatusError struct {
	Status int
	Err    error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// Handler serves JSON-RPC over POST at any path it is mounted on. Each HTTP
// request is a stateless caller with door "http"; it is not listed as a
// client. who may be nil: every request is then an anonymous caller, never
// an admin.
func (r *RPC) Handler(who CallerFunc) http.Handler {
	if who == nil {
		who = func(req *http.Request) (*service.Caller, error) {
			return &service.Caller{Door: "http", Remote: req.RemoteAddr}, nil
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST with a JSON-RPC 2.0 body", http.StatusMethodNotAllowed)
			return
		}
		caller, err := who(req)
		if err != nil {
			status := http.StatusUnauthorized
			if se, ok := errors.AsType[*StatusError](err); ok {
				status = se.Status
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="nexo"`)
			}
			http.Error(w, err.Error(), status)
			return
		}
		r.serveHTTP(w, req, caller)
	})
}

// bodies keeps the buffers POST bodies are read into (*[]byte).
var bodies sync.Pool

// maxPooledBody is the largest body buffer kept for the next request:
// a rare large one is left to the GC.
const maxPooledBody = 64 << 10

func (r *RPC) serveHTTP(w http.ResponseWriter, req *http.Request, caller *service.Caller) {
	bp, _ := bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	body, err := readAll(http.MaxBytesReader(w, req.Body, MaxBody), (*bp)[:0])
	defer func() {
		if cap(body) <= maxPooledBody {
			*bp = body
			bodies.Put(bp)
		}
	}()
	if err != nil {
		// The rest of the body is not read: the connection closes after
		// the answer, and says so (MaxBytesReader does that by itself only
		// on net/http's own ResponseWriter, which doors may wrap).
		w.Header().Set("Connection", "close")
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			http.Error(w, "body over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	ctx := req.Context()
	if r.Tracer != nil {
		ctx = tracing.ExtractHTTP(ctx, req.Header)
	}
	out, _ := r.Handle(ctx, caller, body)
	if out == nil {
		w.WriteHeader(http.StatusNoContent) // notifications only: nothing to answer
		return
	}
	w.Header()["Content-Type"] = jsonType
	// A client that hung up gets nothing; nothing to do.
	_, _ = w.Write(out)
	_, _ = w.Write(newline)
}

var (
	jsonType = []string{"application/json"} // shared: net/http only reads it
	newline  = []byte{'\n'}
)

// readAll is io.ReadAll into b, which it grows as needed.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
