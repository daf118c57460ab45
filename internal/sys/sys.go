// Package sys is every sys.* method, in one place:
//
//   - sys.echo returns its payload. It keeps no state, so it runs
//     anywhere, a worker too (Methods).
//   - sys.info, sys.clients, sys.subscribe, sys.stats, sys.kick,
//     sys.monitor and sys.unmonitor describe or act on the process holding
//     the client's connection (ServerMethods). A gateway always answers
//     them itself; they are never forwarded.
//   - sys.cluster describes every gateway of a cluster (ClusterMethod).
package sys

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"time"

	"github.com/nexo-project/nexo/internal/buildinfo"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Source is the server the server methods report on and act on.
type Source interface {
	// ClientCount returns the number of clients connected now.
	ClientCount() int
	// Clients returns the connected and recently closed clients.
	Clients() status.Snapshot
	// Stats returns the server's totals; History its last minutes.
	Stats() status.Stats
	History() []status.Sample
	// Subscribe subscribes a connected client to event topics.
	Subscribe(id uint64, topics []string) error
	// Kick ends a client's session with a reason; false when it is not
	// connected.
	Kick(id uint64, reason string) bool
}

// Monitor is what a Source offers when it can stream the requests and
// answers passing through it: sys.monitor and sys.unmonitor are served
// only by a Source that is a Monitor.
type Monitor interface {
	// Monitor makes client id a watcher of the stream: the requests of
	// client (0: every client) to method ("": every method), with their
	// frames when frames is set, follow as events of the topic "monitor".
	// A second call replaces the filter.
	Monitor(id, client uint64, method string, frames bool) error
	// Unmonitor ends client id's watch; false when it had none.
	Unmonitor(id uint64) bool
}

// MonitorParams are the params of sys.monitor, and its answer: what the
// watcher sees. Every member is optional.
type MonitorParams struct {
	Client uint64 `json:"client,omitempty" jsonschema:"minimum=1,description=only this client's requests (default: every client's but the watcher's own)"`
	Method string `json:"method,omitempty" jsonschema:"minLength=1,maxLength=255,description=only this method's requests (default: every method's)"`
	Frames bool   `json:"frames,omitempty" jsonschema:"description=add each request and answer as it was on the wire (base64; at most 512 bytes of each)"`
}

// Info is the response of sys.info.
type Info struct {
	Server    string   `json:"server"`
	Version   string   `json:"version"`
	Commit    string   `json:"commit,omitempty"`     // the VCS revision the binary was built from
	BuildDate string   `json:"build_date,omitempty"` // RFC 3339
	Dirty     bool     `json:"dirty,omitempty"`      // built with changes not committed
	GoVersion string   `json:"go_version"`
	UptimeS   float64  `json:"uptime_s"`
	Clients   int      `json:"clients"`
	Methods   []string `json:"methods"`
}

// Methods returns the sys service: sys.echo.
func Methods() []service.Method {
	return []service.Method{{
		Name: "sys.echo", Summary: "returns its payload", Inline: true, Idempotent: true, JSON: echoJSON,
		Desc: service.Description{
			Params: json.RawMessage(`{"type":"array","prefixItems":[{"title":"text","type":"string"}],"minItems":1,"maxItems":1,"items":false,"description":"[text]"}`),
			Result: json.RawMessage(`{"type":"string"}`), Errors: []wire.Code{wire.CodeBadPayload},
			Binary:   "any bytes → the same bytes (JSON doors: [\"text\"] → \"text\")",
			Examples: []service.Example{{Params: json.RawMessage(`["hello"]`), Result: json.RawMessage(`"hello"`)}},
		},
		Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			return append(dst, req.Payload...), nil
		},
	}}
}

// ServerMethods returns the methods that describe and act on the process
// holding the client's connection. version is the server's version
// ("0.1.0"); reg lists the methods for sys.info. Payloads are JSON on
// every door.
//
//   - sys.info: server name, version, uptime, clients and methods.
//   - sys.clients: the client list; admins only.
//   - sys.subscribe ["stats", "clients"]: events of those topics follow,
//     as EVENT frames (native) or event.<topic> notifications (ws). The
//     clients topic sends the current list at once.
//   - sys.stats: the totals and the samples of the last minutes.
//   - sys.kick [id, "reason"]: admins only; the client gets GOODBYE.
//   - sys.monitor {"client": id, "method": "name", "frames": true}: admins
//     only, when src is a Monitor; the requests and answers passing
//     through the server follow as events of the topic "monitor".
//     sys.unmonitor ends that.
//   - sys.describe, or ["method"]: the catalog, every method described, or
//     one method.
func ServerMethods(src Source, reg *service.Registry, version string) []service.Method {
	ms := serverMethods(src, reg, version)
	if mon, ok := src.(Monitor); ok {
		ms = append(ms, monitorMethods(mon)...)
	}
	return ms
}

// serverMethods are the methods of ServerMethods every Source serves.
func serverMethods(src Source, reg *service.Registry, version string) []service.Method {
	start := time.Now()
	build := buildinfo.Read()
	return []service.Method{
		describeMethod(reg, version),
		{
			Name: "sys.info", Summary: "server name, version, uptime, clients and methods (JSON)", Inline: true, Idempotent: true,
			JSON: service.NoParamsJSON, Desc: service.Description{Params: noParams, Result: service.SchemaOf[Info]()},
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				info := Info{
					Server:    "nexo/" + version,
					Version:   version,
					Commit:    build.Commit,
					BuildDate: build.Date,
					Dirty:     build.Dirty,
					GoVersion: runtime.Version(),
					UptimeS:   time.Since(start).Round(time.Millisecond).Seconds(),
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
			Desc: service.Description{Params: noParams, Result: service.SchemaOf[status.Snapshot](), Errors: []wire.Code{wire.CodeUnknownMethod}},
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				if !req.Caller.Trusted() {
					return dst, service.ErrNotPermitted
				}
				b, err := json.Marshal(src.Clients())
				return append(dst, b...), err
			},
		},
		{
			Name: "sys.subscribe", Summary: `subscribe this connection to events: ["stats","clients"] (JSON)`,
			Idempotent: true, JSON: jsonPayload,
			Desc: service.Description{Params: topics, Result: topics, Errors: []wire.Code{wire.CodeBadPayload},
				Examples: []service.Example{{Params: json.RawMessage(`["stats"]`), Result: json.RawMessage(`["stats"]`)}}},
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				var ts []string
				if err := json.Unmarshal(req.Payload, &ts); err != nil || len(ts) == 0 {
					return dst, fmt.Errorf("%w: want a JSON array of topics, such as [\"stats\",\"clients\"]", service.ErrBadPayload)
				}
				if err := src.Subscribe(req.Caller.ID, ts); err != nil {
					return dst, fmt.Errorf("%w: %w", service.ErrBadPayload, err)
				}
				b, err := json.Marshal(ts)
				return append(dst, b...), err
			},
		},
		{
			Name: "sys.stats", Summary: "server totals and the last minutes of requests/s and p99 (JSON)",
			Idempotent: true, JSON: jsonPayload, Desc: service.Description{Params: noParams, Result: service.SchemaOf[StatsReply]()},
			Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
				b, err := json.Marshal(StatsReply{src.Stats(), src.History()})
				return append(dst, b...), err
			},
		},
		{
			Name: "sys.kick", Summary: `disconnect a client: [id, "reason"]; admins only`,
			Hidden: true, JSON: jsonPayload,
			Desc: service.Description{
				Params:   json.RawMessage(`{"type":"array","prefixItems":[{"title":"id","type":"integer","minimum":1},{"title":"reason","type":"string"}],"minItems":1,"maxItems":2,"items":false,"description":"[id, reason]"}`),
				Result:   json.RawMessage(`{"type":"boolean","description":"whether that client was connected"}`),
				Errors:   []wire.Code{wire.CodeBadPayload, wire.CodeUnknownMethod},
				Examples: []service.Example{{Params: json.RawMessage(`[999999,"maintenance"]`), Result: json.RawMessage(`false`)}},
			},
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				if !req.Caller.Trusted() {
					return dst, service.ErrNotPermitted
				}
				var p []json.RawMessage
				var id float64
				var reason string
				if json.Unmarshal(req.Payload, &p) != nil || len(p) < 1 || len(p) > 2 || json.Unmarshal(p[0], &id) != nil ||
					id < 1 || id != math.Trunc(id) || id > 1<<53 || (len(p) == 2 && json.Unmarshal(p[1], &reason) != nil) {
					return dst, fmt.Errorf("%w: want [id, \"reason\"]", service.ErrBadPayload)
				}
				if reason == "" {
					reason = "by admin " + req.Caller.Remote
				}
				return fmt.Appendf(dst, "%t", src.Kick(uint64(id), reason)), nil
			},
		},
	}
}

// monitorMethods are sys.monitor and sys.unmonitor, on mon.
func monitorMethods(mon Monitor) []service.Method {
	watch := service.JSON("sys.monitor", func(_ context.Context, c *service.Caller, p MonitorParams) (MonitorParams, error) {
		if err := mon.Monitor(c.ID, p.Client, p.Method, p.Frames); err != nil {
			return p, fmt.Errorf("%w: %w", service.ErrBadPayload, err)
		}
		return p, nil
	})
	watch.Summary = `watch the requests and answers passing through the server: {"client": id, "method": "name", "frames": true}; admins only`
	watch.Hidden, watch.Idempotent = true, true
	watch.Desc.Errors = []wire.Code{wire.CodeBadPayload, wire.CodeUnknownMethod}
	watch.Desc.Examples = []service.Example{{Params: json.RawMessage(`{"method":"math.add"}`), Result: json.RawMessage(`{"method":"math.add"}`)}}
	watch.Handler = adminOnly(watch.Handler)
	return []service.Method{watch, {
		Name: "sys.unmonitor", Summary: "stop watching the requests and answers (sys.monitor); admins only",
		Idempotent: true, Hidden: true, JSON: service.NoParamsJSON,
		Desc: service.Description{Params: noParams, Result: json.RawMessage(`{"type":"boolean","description":"whether this connection was watching"}`),
			Errors:   []wire.Code{wire.CodeUnknownMethod},
			Examples: []service.Example{{Params: json.RawMessage(`[]`), Result: json.RawMessage(`false`)}}},
		Handler: adminOnly(func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			return strconv.AppendBool(dst, mon.Unmonitor(req.Caller.ID)), nil
		}),
	}}
}

// adminOnly refuses h to callers that are not admins, before it looks at
// their params: as for sys.kick, they cannot tell the method exists.
func adminOnly(h service.Handler) service.Handler {
	return func(ctx context.Context, req service.Request, dst []byte) ([]byte, error) {
		if !req.Caller.Trusted() {
			return dst, service.ErrNotPermitted
		}
		return h(ctx, req, dst)
	}
}

// Catalog is the response of sys.describe without a method name: every
// method the caller may call, described.
type Catalog struct {
	Server  string              `json:"server"`
	Methods []service.Described `json:"methods"`
}

// describeMethod is sys.describe: the whole catalog, or one method
// (["math.add"] or {"method":"math.add"}).
func describeMethod(reg *service.Registry, version string) service.Method {
	return service.Method{
		Name: "sys.describe", Summary: `describe every method, or one: ["math.add"] (JSON)`,
		Inline: true, Idempotent: true, JSON: jsonPayload,
		Desc: service.Description{
			Params: json.RawMessage(`{"anyOf":[{"type":"null"},{"type":"array","maxItems":0},{"type":"object","maxProperties":0},` +
				`{"type":"array","prefixItems":[{"title":"method","type":"string"}],"minItems":1,"maxItems":1,"items":false},` +
				`{"type":"object","properties":{"method":{"type":"string"}},"required":["method"],"additionalProperties":false}]}`),
			Result:   json.RawMessage(`{"anyOf":[` + string(service.SchemaOf[Catalog]()) + `,` + string(service.SchemaOf[service.Described]()) + `]}`),
			Errors:   []wire.Code{wire.CodeBadPayload, wire.CodeUnknownMethod},
			Examples: []service.Example{{Params: json.RawMessage(`["no.such"]`), Error: "UNKNOWN_METHOD"}},
		},
		Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			trusted := req.Caller.Trusted()
			name, err := describeParams(req.Payload)
			if err != nil {
				return dst, err
			}
			var v any = Catalog{Server: "nexo/" + version, Methods: reg.Describe(trusted)}
			if name != "" {
				d, ok := describeOne(reg, name, trusted)
				if !ok {
					return dst, service.Error(wire.CodeUnknownMethod, "no method "+strconv.Quote(name))
				}
				v = d
			}
			b, err := json.Marshal(v)
			return append(dst, b...), err
		},
	}
}

// describeOne describes one method the caller may see, registered here or
// known elsewhere (a gateway's cluster).
func describeOne(reg *service.Registry, name string, trusted bool) (service.Described, bool) {
	for _, d := range reg.Describe(trusted) {
		if d.Name == name {
			return d, true
		}
	}
	return service.Described{}, false
}

// describeParams reads sys.describe's params: the method's name, or "" for
// the whole catalog.
func describeParams(p []byte) (string, error) {
	p = bytes.TrimSpace(p)
	switch string(p) {
	case "", "null", "[]", "{}":
		return "", nil
	}
	var byPos []string
	if json.Unmarshal(p, &byPos) == nil && len(byPos) == 1 {
		return byPos[0], nil
	}
	var byName struct {
		Method string `json:"method"`
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.DisallowUnknownFields()
	if d.Decode(&byName) == nil && byName.Method != "" {
		return byName.Method, nil
	}
	return "", fmt.Errorf("%w: want nothing, [\"method\"] or {\"method\": \"...\"}", service.ErrBadPayload)
}

// StatsReply is the response of sys.stats (and the admin API's
// /api/stats): the totals and the samples of the last minutes.
type StatsReply struct {
	status.Stats
	History []status.Sample `json:"history"`
}

// ClusterMethod returns sys.cluster: the clients of every gateway, each
// row naming its gateway, the gateways' totals and the workers (JSON);
// admins only. cluster gathers that view (a gateway's Cluster).
func ClusterMethod(cluster func(ctx context.Context) (any, error)) service.Method {
	return service.Method{
		Name: "sys.cluster", Summary: "clients of every gateway, gateway totals and workers (JSON); admins only",
		Idempotent: true, Hidden: true,
		JSON: service.NoParamsJSON,
		Desc: service.Description{Params: noParams, Result: json.RawMessage(`{"type":"object"}`),
			Errors: []wire.Code{wire.CodeUnknownMethod, wire.CodeUnavailable}},
		Handler: func(ctx context.Context, req service.Request, dst []byte) ([]byte, error) {
			if !req.Caller.Trusted() {
				return dst, service.ErrNotPermitted
			}
			c, err := cluster(ctx)
			if err != nil {
				return dst, err
			}
			b, err := json.Marshal(c)
			return append(dst, b...), err
		},
	}
}

// echoJSON makes sys.echo take ["text"] and answer "text".
// noParams is the params schema of a method that takes none: absent,
// null, [] or {}.
var noParams = json.RawMessage(`{"anyOf":[{"type":"null"},{"type":"array","maxItems":0},{"type":"object","maxProperties":0}]}`)

// topics is sys.subscribe's params and result.
var topics = json.RawMessage(`{"type":"array","items":{"enum":["stats","clients"]},"minItems":1,"uniqueItems":true}`)

var echoJSON = &service.JSONCodec{
	MaxParams: 1,
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

// jsonPayload is the codec of methods whose payload is JSON on every door:
// params pass through, results too.
var jsonPayload = &service.JSONCodec{
	Params: func(params, dst []byte) ([]byte, error) {
		p := bytes.TrimSpace(params)
		if len(p) == 0 {
			p = []byte("null")
		}
		return append(dst, p...), nil
	},
	Result: func(payload, dst []byte) ([]byte, error) { return append(dst, payload...), nil },
}
