// Package admin is nexo's admin listener: the client list and kicks over a
// small JSON API, server statistics, health checks for orchestrators, and
// Prometheus metrics.
//
//	GET    /api/clients?door=ws&offset=0&limit=100
//	GET    /api/clients?scope=cluster   (every gateway's clients, over NATS)
//	GET    /api/clients/{id}
//	DELETE /api/clients/{id}?reason=...
//	GET    /api/closed
//	GET    /api/stats
//	GET    /livez, /readyz, /metrics
//	/debug/pprof/, POST /debug/free-memory (only with Options.Pprof)
//
// When an admin token is configured, /api and /debug need "Authorization:
// Bearer <token>", checked by the server's one authentication (digests
// compared in constant time, failures charged to the address); a missing
// or wrong one gets 401, and an address over its failure limit 429.
// /livez, /readyz and /metrics stay open for probes and scrapers: they say
// nothing about individual clients.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nexo-project/nexo/internal/httpguard"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/internal/sys"
)

// Door is the admin listener's name in metrics (its authentication
// failures and refused HTTP requests).
const Door = "admin"

// Options configure the admin handler.
type Options struct {
	Server *server.Server
	// Listen is the listener's address, and Hosts more host names, that
	// requests may name in their Host header; others get 421 (see
	// httpguard.Policy).
	Listen string
	Hosts  []string
	// Pprof mounts net/http/pprof under /debug/pprof/, and
	// /debug/free-memory, which returns the memory the Go runtime holds
	// free to the system (for measuring what clients really cost).
	Pprof bool
	Log   *slog.Logger
	// Cluster, when set, answers /api/clients?scope=cluster with the view
	// of every gateway (a gateway's backplane.Gateway.Cluster).
	Cluster func(ctx context.Context) (any, error)
	// Collectors are more metrics for /metrics (a gateway's forwarder).
	Collectors []prometheus.Collector
}

// MaxLimit bounds a page of /api/clients.
const MaxLimit = 1000

// Page is one page of /api/clients.
type Page struct {
	Total   int                 `json:"total"` // clients matching the filter
	Offset  int                 `json:"offset"`
	Limit   int                 `json:"limit"`
	Clients []status.ClientInfo `json:"clients"`
}

// Handler returns the admin handler. It fails when a collector cannot be
// registered (two that describe the same metric).
func Handler(o Options) (http.Handler, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	reg, err := Registry(o.Server, o.Collectors...)
	if err != nil {
		return nil, err
	}
	a := &api{o: o, guard: &httpguard.Policy{Listen: o.Listen, Hosts: o.Hosts}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn)}))
	mux.Handle("GET /api/clients", a.auth(a.clients))
	mux.Handle("GET /api/clients/{id}", a.auth(a.client))
	mux.Handle("DELETE /api/clients/{id}", a.auth(a.kick))
	mux.Handle("GET /api/closed", a.auth(a.closed))
	mux.Handle("GET /api/stats", a.auth(a.stats))
	if o.Pprof {
		mux.Handle("/debug/pprof/", a.auth(pprof.Index))
		mux.Handle("/debug/pprof/cmdline", a.auth(pprof.Cmdline))
		mux.Handle("/debug/pprof/profile", a.auth(pprof.Profile))
		mux.Handle("/debug/pprof/symbol", a.auth(pprof.Symbol))
		mux.Handle("/debug/pprof/trace", a.auth(pprof.Trace))
		mux.Handle("POST /debug/free-memory", a.auth(freeMemory))
	}
	return a.guard.Host(mux), nil
}

type api struct {
	o     Options
	guard *httpguard.Policy
}

// Freed is the answer of POST /debug/free-memory: the Go heap before and
// after returning its free memory to the system.
type Freed struct {
	HeapInuse      uint64 `json:"heap_inuse_bytes"`
	StackInuse     uint64 `json:"stack_inuse_bytes"`
	ReleasedBefore uint64 `json:"heap_released_before_bytes"`
	ReleasedAfter  uint64 `json:"heap_released_after_bytes"`
}

// freeMemory runs a GC and returns every free page to the system
// (debug.FreeOSMemory). The runtime otherwise keeps free memory up to its
// next heap goal (GOGC) mapped, so RSS after a burst of connections says
// more about the allocator's headroom than about what clients hold.
func freeMemory(w http.ResponseWriter, _ *http.Request) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	debug.FreeOSMemory()
	runtime.ReadMemStats(&after)
	reply(w, http.StatusOK, Freed{
		HeapInuse:      after.HeapInuse,
		StackInuse:     after.StackInuse,
		ReleasedBefore: before.HeapReleased,
		ReleasedAfter:  after.HeapReleased,
	})
}

// auth refuses requests from web pages of any origin (the admin API is
// for programs and operators, never for a page: 403), and requires the
// admin token, when one is configured, through the server's one
// authentication.
func (a *api) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || a.guard.Foreign(r) {
			fail(w, http.StatusForbidden, "the admin API does not answer web pages")
			return
		}
		tok, _ := server.BearerToken(r)
		if err := a.o.Server.AuthenticateAdmin(r.RemoteAddr, tok, Door); err != nil {
			a.o.Log.Warn("admin API: unauthorized", slog.String("remote", r.RemoteAddr), slog.String("path", r.URL.Path))
			if errors.Is(err, server.ErrAuthLimit) {
				fail(w, http.StatusTooManyRequests, err.Error())
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="nexo admin"`)
			fail(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		h(w, r)
	})
}

func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	if !a.o.Server.Accepting() {
		http.Error(w, "draining\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (a *api) clients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch q.Get("scope") {
	case "", "local":
	case "cluster":
		a.cluster(w, r)
		return
	default:
		fail(w, http.StatusBadRequest, "scope must be local or cluster")
		return
	}
	offset, err1 := intParam(q.Get("offset"), 0)
	limit, err2 := intParam(q.Get("limit"), 100)
	if err1 != nil || err2 != nil || offset < 0 || limit < 1 || limit > MaxLimit {
		fail(w, http.StatusBadRequest, "offset must be ≥ 0 and limit within 1..1000")
		return
	}
	all := a.o.Server.Clients().Clients
	if door := q.Get("door"); door != "" {
		all = slices.DeleteFunc(all, func(c status.ClientInfo) bool { return c.Door != door })
	}
	p := Page{Total: len(all), Offset: offset, Limit: limit, Clients: []status.ClientInfo{}}
	if offset < len(all) {
		p.Clients = all[offset:min(len(all), offset+limit)]
	}
	reply(w, http.StatusOK, p)
}

// cluster answers the whole cluster's view, gathered over NATS.
func (a *api) cluster(w http.ResponseWriter, r *http.Request) {
	if a.o.Cluster == nil {
		fail(w, http.StatusNotFound, "this server is not part of a cluster: start it with --nats")
		return
	}
	v, err := a.o.Cluster(r.Context())
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "cannot gather the cluster view: "+err.Error())
		return
	}
	reply(w, http.StatusOK, v)
}

// pathID reads the {id} of the path; a malformed one is answered 400.
func pathID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		fail(w, http.StatusBadRequest, "the id must be a positive integer")
		return 0, false
	}
	return id, true
}

func (a *api) client(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	c, ok := a.o.Server.Client(id)
	if !ok {
		fail(w, http.StatusNotFound, "no connected client "+r.PathValue("id"))
		return
	}
	reply(w, http.StatusOK, c)
}

func (a *api) kick(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = "by the admin API"
	}
	if len(reason) > 200 {
		fail(w, http.StatusBadRequest, "reason over 200 bytes")
		return
	}
	if !a.o.Server.Kick(id, reason) {
		fail(w, http.StatusNotFound, "no connected client "+r.PathValue("id"))
		return
	}
	a.o.Log.Info("admin API: client kicked", slog.Uint64("client_id", id), slog.String("reason", reason), slog.String("remote", r.RemoteAddr))
	reply(w, http.StatusAccepted, map[string]any{"kicked": id, "reason": reason})
}

func (a *api) closed(w http.ResponseWriter, _ *http.Request) {
	reply(w, http.StatusOK, a.o.Server.Clients().Closed)
}

func (a *api) stats(w http.ResponseWriter, _ *http.Request) {
	reply(w, http.StatusOK, sys.StatsReply{Stats: a.o.Server.Stats(), History: a.o.Server.History()})
}

func intParam(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	return strconv.Atoi(s)
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client may have gone; nothing to do
}

func fail(w http.ResponseWriter, status int, msg string) {
	reply(w, status, map[string]string{"error": msg})
}
