package backplane

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/internal/upstream"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Gathering replies from many processes: a query is published once and
// every gateway (or worker) answers. NATS does not say how many will, so a
// gather ends MaxGather after it began, or after a quiet time without
// replies, whichever is first. The quiet time is Quiet, or as long as the
// first reply took if that is longer: busy processes answer late and far
// apart (a gateway holding 15,000 clients on a loaded machine may take
// hundreds of milliseconds), and a fixed 100 ms would miss some.
const (
	MaxGather = 2 * time.Second
	Quiet     = 100 * time.Millisecond
)

// GatewayOptions configure a Gateway.
type GatewayOptions struct {
	Name       string // this gateway's name in the cluster view; unique
	Prefix     string // subject prefix (DefaultPrefix when empty)
	Version    string // SemVer
	RetryAfter time.Duration
	Log        *slog.Logger
	// Upstreams, when set, reports the HTTP upstreams the gateway serves
	// in-process (nexo serve --upstream), for the cluster view.
	Upstreams func() []upstream.Health
	// Tracer, when set, is the server's (server.Config.Tracer): the
	// forwarder's spans of the NATS hop (see ForwarderOptions.Tracer).
	Tracer trace.Tracer
}

// Gateway is the NATS side of a nexo server: it forwards the methods the
// server does not serve itself (Forwarder), answers the cluster's queries
// about its clients and totals, and gathers those of every gateway.
type Gateway struct {
	*Forwarder
	name     string
	nc       *nats.Conn
	local    Local
	fwd      forwardCollector
	subjects Subjects
	svc      micro.Service
	catalog  *clusterCatalog
	joined   *nats.Subscription // workers that start say so here
}

// Local is what a gateway tells the cluster about the server it runs in.
type Local interface {
	Clients() status.Snapshot
	Stats() status.Stats
}

// NewGateway starts forwarding and answering on nc for the local server.
func NewGateway(nc *nats.Conn, local Local, o GatewayOptions) (*Gateway, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	f, err := NewForwarder(nc, ForwarderOptions{Prefix: o.Prefix, RetryAfter: o.RetryAfter, Log: o.Log, Tracer: o.Tracer})
	if err != nil {
		return nil, err
	}
	g := &Gateway{Forwarder: f, name: o.Name, nc: nc, local: local, fwd: forwardCollector{f, nc}, subjects: Subjects{o.Prefix}}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	g.catalog = newClusterCatalog(nc, g.subjects, o.Log, f.Stub)
	joined, err := nc.Subscribe(g.subjects.Admin(JoinedQuery), func(m *nats.Msg) { g.catalog.joined(m.Data) })
	if err != nil {
		g.catalog.close()
		f.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.joined = joined
	// Gateways are a micro service too, so "nats micro ls" shows them; the
	// queries go to every gateway, so no queue group.
	g.svc, err = micro.AddService(nc, micro.Config{
		Name:               GatewayService,
		Version:            o.Version,
		Description:        "nexo gateway: client connections",
		Metadata:           map[string]string{"gateway": o.Name},
		QueueGroupDisabled: true,
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gateway service: %w", err)
	}
	for _, ep := range []struct {
		name string
		body func() any
	}{
		{"clients", func() any {
			all := local.Clients().Clients
			return GatewayClients{Gateway: g.name, Total: len(all), Clients: all[:min(len(all), MaxGatewayClients)]}
		}},
		{"stats", func() any {
			gs := GatewayStats{Gateway: g.name, Stats: local.Stats(), Forward: f.Stats()}
			if o.Upstreams != nil {
				gs.Upstreams = o.Upstreams()
			}
			return gs
		}},
	} {
		err := g.svc.AddEndpoint(ep.name, micro.HandlerFunc(func(r micro.Request) { _ = r.RespondJSON(ep.body()) }),
			micro.WithEndpointSubject(g.subjects.Admin(ep.name)))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("gateway endpoint %s: %w", ep.name, err)
		}
	}
	return g, nil
}

// Name returns the gateway's name.
func (g *Gateway) Name() string { return g.name }

// Close stops answering queries and forwarding.
func (g *Gateway) Close() {
	if g.svc != nil {
		_ = g.svc.Stop() // fails only when the connection is closed already
	}
	_ = g.joined.Unsubscribe() // fails only when the connection is closed already
	g.catalog.close()
	g.Forwarder.Close()
}

// Remote is the cluster's catalog: the methods its workers serve, for the
// registry (service.Registry.SetRemote), so that sys.describe shows them
// and the JSON doors can call the JSON ones.
func (g *Gateway) Remote() service.Remote { return g.catalog }

// Fallback is the registry's fallback: a method the gateway does not
// know is forwarded when the cluster's catalog has it (gathered again
// first if it is stale, see CatalogMinGap), and is UNKNOWN_METHOD
// otherwise, so that a typo is not taken for an outage. When the catalog
// cannot be gathered (NATS is unreachable) the answer is UNAVAILABLE.
func (g *Gateway) Fallback() service.Method {
	fwd := g.Forwarder.Fallback()
	return service.Method{
		Name: fwd.Name,
		// A method of the catalog goes through its stub, which queues it
		// like a built-in method's: batched with the burst it came in.
		Batcher: g.Forwarder,
		Async: func(req service.Request, deadline time.Time, done func([]byte, error) service.Flusher) {
			if m := g.catalog.forwardBytes(req.Method); m != nil {
				m.Async(req, deadline, done)
				return
			}
			name := string(req.Method)
			if !validSubject(name) {
				fwd.Async(req, deadline, done) // refused there
				return
			}
			// Decided off the reader: a gather may take a while.
			req.Method, req.Payload = []byte(name), slices.Clone(req.Payload)
			go func() {
				ok, err := g.catalog.lookup(name)
				switch {
				case err != nil:
					g.answerNow(done, wire.CodeUnavailable, "cannot reach the cluster to look up "+name+": "+err.Error())
				case !ok:
					g.answerNow(done, wire.CodeUnknownMethod, "no worker in the cluster serves "+name)
				default:
					fwd.Async(req, deadline, done)
				}
			}()
		},
	}
}

// MaxGatewayClients bounds the clients one gateway lists in its answer to
// "<prefix>.admin.clients" (those with the lowest ids), and the clients of
// the whole cluster view, so that answers stay well under NATS's message
// size and a client's max frame; the totals still count them all.
const MaxGatewayClients = 1000

// GatewayClients is a gateway's answer to "<prefix>.admin.clients".
type GatewayClients struct {
	Gateway string              `json:"gateway"`
	Total   int                 `json:"total"`   // connected now
	Clients []status.ClientInfo `json:"clients"` // at most MaxGatewayClients of them, by id
}

// GatewayStats is a gateway's answer to "<prefix>.admin.stats".
type GatewayStats struct {
	Gateway   string            `json:"gateway"`
	Stats     status.Stats      `json:"stats"`
	Forward   ForwardStats      `json:"forward"`
	Upstreams []upstream.Health `json:"upstreams,omitempty"` // served in-process
}

// ClusterClient is one row of the cluster's client list.
type ClusterClient struct {
	Gateway string `json:"gateway"`
	status.ClientInfo
}

// WorkerInfo describes one worker, from its micro service stats.
type WorkerInfo struct {
	ID        string            `json:"id"`
	Version   string            `json:"version"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Started   time.Time         `json:"started"`
	Requests  uint64            `json:"requests"` // requests served, each of a batch counted
	Errors    int               `json:"errors"`   // requests answered with an error, each of a batch counted
	Endpoints []WorkerEndpoint  `json:"endpoints"`
}

// WorkerEndpoint is one method a worker serves.
type WorkerEndpoint struct {
	Method   string  `json:"method"`
	Subject  string  `json:"subject"`
	Requests uint64  `json:"requests"` // requests, each of a batch counted
	Messages int     `json:"messages"` // NATS messages (a batch is one)
	Errors   int     `json:"errors"`   // requests answered with an error, each of a batch counted
	AvgUS    float64 `json:"avg_us"`   // average processing time of a message, microseconds
	// Upstream is the health of the HTTP upstream that serves the
	// method, for a worker in front of one.
	Upstream *upstream.Health `json:"upstream,omitempty"`
}

// ClusterMethod is a method of the cluster and what serves it.
type ClusterMethod struct {
	Name     string   `json:"name"`
	ServedBy []string `json:"served_by"`
}

// ClusterTotals sum the cluster view.
type ClusterTotals struct {
	Gateways int    `json:"gateways"`
	Workers  int    `json:"workers"`
	Clients  int    `json:"clients"`
	Requests uint64 `json:"requests"` // answered by the gateways
}

// Cluster is the view of every gateway and worker that answered.
type Cluster struct {
	Gateways []GatewayStats  `json:"gateways"`
	Clients  []ClusterClient `json:"clients"`
	Workers  []WorkerInfo    `json:"workers"`
	// Methods are every method the gateway that answers can call, and
	// what serves each: in-process, a Go or Node worker, an upstream.
	Methods []ClusterMethod `json:"methods"`
	Totals  ClusterTotals   `json:"totals"`
	// Truncated says some gateway had more clients than it lists
	// (MaxGatewayClients); Totals.Clients counts them all.
	Truncated bool    `json:"truncated,omitempty"`
	TookMS    float64 `json:"took_ms"` // how long gathering took
}

// Cluster gathers the clients and totals of every gateway, this one
// included, and the workers' stats.
func (g *Gateway) Cluster(ctx context.Context) (Cluster, error) {
	if !g.nc.IsConnected() {
		return Cluster{}, &wire.Error{Code: wire.CodeUnavailable, Msg: "no connection to NATS"}
	}
	start := time.Now()
	var (
		wg                      sync.WaitGroup
		clients, stats, workers [][]byte
		errs                    [3]error
	)
	for i, q := range []struct {
		subject string
		out     *[][]byte
	}{
		{g.subjects.Admin("clients"), &clients},
		{g.subjects.Admin("stats"), &stats},
		{micro.APIPrefix + "." + micro.StatsVerb.String() + "." + WorkerService, &workers},
	} {
		wg.Go(func() { *q.out, errs[i] = Gather(ctx, g.nc, q.subject, nil) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return Cluster{}, err
		}
	}
	var c Cluster
	for _, b := range clients {
		var gc GatewayClients
		if json.Unmarshal(b, &gc) != nil {
			continue
		}
		for _, ci := range gc.Clients {
			c.Clients = append(c.Clients, ClusterClient{Gateway: gc.Gateway, ClientInfo: ci})
		}
		c.Totals.Clients += max(gc.Total, len(gc.Clients))
		c.Truncated = c.Truncated || gc.Total > len(gc.Clients)
	}
	for _, b := range stats {
		var gs GatewayStats
		if json.Unmarshal(b, &gs) == nil {
			c.Gateways = append(c.Gateways, gs)
			c.Totals.Requests += gs.Stats.Requests
		}
	}
	for _, b := range workers {
		var st micro.Stats
		if json.Unmarshal(b, &st) != nil {
			continue
		}
		w := WorkerInfo{ID: st.ID, Version: st.Version, Metadata: st.Metadata, Started: st.Started}
		for _, e := range st.Endpoints {
			var data EndpointData
			if json.Unmarshal(e.Data, &data) != nil || data.Requests == 0 {
				data.Requests = uint64(e.NumRequests) // not a nexo worker: messages are requests
			}
			// A Go worker counts its errors (micro counts only its
			// subscription's own); other workers (JavaScript) answer
			// theirs through micro, which counts them.
			data.Errors += uint64(e.NumErrors)
			w.Requests += data.Requests
			w.Errors += int(data.Errors)
			w.Endpoints = append(w.Endpoints, WorkerEndpoint{
				Method: g.method(e.Subject), Subject: e.Subject, Requests: data.Requests, Messages: e.NumRequests,
				Errors: int(data.Errors), AvgUS: float64(e.AverageProcessingTime) / 1e3, Upstream: data.Upstream,
			})
		}
		c.Workers = append(c.Workers, w)
	}
	slices.SortFunc(c.Gateways, func(a, b GatewayStats) int { return cmp.Compare(a.Gateway, b.Gateway) })
	slices.SortFunc(c.Clients, func(a, b ClusterClient) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.ID, b.ID))
	})
	slices.SortFunc(c.Workers, func(a, b WorkerInfo) int { return cmp.Compare(a.ID, b.ID) })
	if len(c.Clients) > MaxGatewayClients { // the whole view stays one modest frame
		c.Clients, c.Truncated = c.Clients[:MaxGatewayClients], true
	}
	c.Totals.Gateways, c.Totals.Workers = len(c.Gateways), len(c.Workers)
	if c.Clients == nil {
		c.Clients = []ClusterClient{}
	}
	c.TookMS = float64(time.Since(start).Microseconds()) / 1e3
	return c, nil
}

// method returns the method of a service subject.
func (g *Gateway) method(subject string) string {
	p := g.subjects.Service("")
	if len(subject) > len(p) && subject[:len(p)] == p {
		return subject[len(p):]
	}
	return subject
}

// Gather publishes a query and collects the replies: until MaxGather has
// passed, the quiet time (Quiet, or the first reply's delay if longer) has
// passed since the last reply, or ctx ends.
func Gather(ctx context.Context, nc *nats.Conn, subject string, data []byte) ([][]byte, error) {
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe() //nolint:errcheck // the subscription is ours alone
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return nil, err
	}
	start := time.Now()
	end := time.NewTimer(MaxGather)
	defer end.Stop()
	quiet := time.NewTimer(MaxGather)
	defer quiet.Stop()
	wait := Quiet
	var out [][]byte
	for {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return out, nil // nobody listens
			}
			if len(out) == 0 {
				wait = max(Quiet, time.Since(start))
			}
			out = append(out, m.Data)
			quiet.Reset(wait)
		case <-quiet.C:
			return out, nil
		case <-end.C:
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// Collector returns the gateway's metrics (its forwarder's), for the admin
// listener's /metrics.
func (g *Gateway) Collector() prometheus.Collector { return g.fwd }
