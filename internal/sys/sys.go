// Package sys is the service every nexo process offers: sys.echo (the sys
// service, which can run in a worker) and sys.info and the privileged
// sys.clients (which describe the process holding the connection).
package sys

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	"github.com/nexo-project/nexo/internal/service"
)

// Source is what sys.info and sys.clients report on; the server implements
// it.
type Source interface {
	// ClientCount returns the number of clients connected now.
	ClientCount() int
	// Snapshot returns the connected and recently closed clients, ready to
	// be marshalled as JSON.
	Snapshot() any
}

// Info is the response of sys.info.
type Info struct {
	Server    string   `json:"server"`
	Version   string   `json:"version"`
	GoVersion string   `json:"go_version"`
	UptimeS   float64  `json:"uptime_s"`
	Clients   int      `json:"clients"`
	Methods   []string `json:"methods"`
}

// Methods returns the sys service: sys.echo, which returns its payload.
// It keeps no state, so it runs anywhere, in a worker too.
func Methods() []service.Method {
	return []service.Method{{
		Name: "sys.echo", Summary: "returns its payload", Inline: true, Idempotent: true, JSON: echoJSON,
		Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			return append(dst, req.Payload...), nil
		},
	}}
}

// ServerMethods returns the methods that describe the process holding the
// client's connection: sys.info and the privileged sys.clients. A gateway
// always answers them itself; they are never forwarded. version is the
// server's version ("0.1.0"); reg lists the methods for sys.info.
func ServerMethods(src Source, reg *service.Registry, version string) []service.Method {
	start := time.Now()
	return []service.Method{
		{
			Name: "sys.info", Summary: "server name, version, uptime, clients and methods (JSON)", Inline: true, Idempotent: true,
			JSON: service.NoParamsJSON,
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				info := Info{
					Server:    "nexo/" + version,
					Version:   version,
					GoVersion: runtime.Version(),
					UptimeS:   time.Since(start).Seconds(),
					Clients:   src.ClientCount(),
					Methods:   reg.Names(req.Caller.Trusted()),
				}
				b, err := json.Marshal(info)
				return append(dst, b...), err
			},
		},
		{
			Name: "sys.clients", Summary: "connected and recently closed clients (JSON); admins only",
			Idempotent: true, Hidden: true, JSON: service.NoParamsJSON,
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				if !req.Caller.Trusted() {
					return dst, service.ErrNotPermitted
				}
				b, err := json.Marshal(src.Snapshot())
				return append(dst, b...), err
			},
		},
	}
}

// echoJSON makes sys.echo take ["text"] and answer "text".
var echoJSON = &service.JSONCodec{
	Params: func(params, dst []byte) ([]byte, error) {
		var p []string
		if err := json.Unmarshal(params, &p); err != nil || len(p) != 1 {
			return dst, fmt.Errorf("%w: want [\"text\"]", service.ErrBadParams)
		}
		return append(dst, p[0]...), nil
	},
	Result: func(payload, dst []byte) ([]byte, error) {
		b, err := json.Marshal(string(payload))
		return append(dst, b...), err
	},
}
