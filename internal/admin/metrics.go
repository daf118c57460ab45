package admin

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nexo-project/nexo/internal/buildinfo"
	"github.com/nexo-project/nexo/internal/server"
)

// Registry returns the Prometheus registry behind /metrics: the server's
// metrics, read from its snapshots at scrape time, the Go runtime's and
// the process's, and any other collectors given. Every Prometheus
// collector of nexo is registered here.
func Registry(srv *server.Server, more ...prometheus.Collector) (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	for _, c := range append([]prometheus.Collector{newCollector(srv), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, more...) {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// collector exposes a server's snapshot to Prometheus.
type collector struct {
	srv                                  *server.Server
	requests, duration, rtt              *prometheus.Desc
	clients, accepted, rejected          *prometheus.Desc
	closed, bytesIn, bytesOut, buildInfo *prometheus.Desc
	authFailures, parked, httpRefused    *prometheus.Desc
	handshakeFailed, httpUnserved, ready *prometheus.Desc
}

func newCollector(srv *server.Server) *collector {
	return &collector{
		srv:      srv,
		requests: prometheus.NewDesc("nexo_requests_total", "Requests answered, by method and result code.", []string{"method", "code"}, nil),
		duration: prometheus.NewDesc("nexo_request_duration_seconds", "Time from reading a request to queueing its answer, by method.",
			[]string{"method"}, nil),
		rtt:       prometheus.NewDesc("nexo_heartbeat_rtt_seconds", "Heartbeat PING to PONG round trip.", nil, nil),
		clients:   prometheus.NewDesc("nexo_clients", "Clients connected now, by door.", []string{"door"}, nil),
		accepted:  prometheus.NewDesc("nexo_connections_accepted_total", "Connections accepted, by door.", []string{"door"}, nil),
		rejected:  prometheus.NewDesc("nexo_connections_rejected_total", "Connections refused over a limit, by door.", []string{"door"}, nil),
		closed:    prometheus.NewDesc("nexo_connections_closed_total", "Sessions closed, by reason.", []string{"reason"}, nil),
		bytesIn:   prometheus.NewDesc("nexo_received_bytes_total", "Bytes received from clients, by door.", []string{"door"}, nil),
		bytesOut:  prometheus.NewDesc("nexo_sent_bytes_total", "Bytes sent to clients, by door.", []string{"door"}, nil),
		buildInfo: prometheus.NewDesc("nexo_build_info", "Always 1; the labels tell the build: its version, VCS revision and dirty flag, and Go's version.", []string{"version", "revision", "dirty", "goversion"}, nil),
		authFailures: prometheus.NewDesc("nexo_auth_failures_total",
			"Authentications refused (wrong or missing token, or an address over its failure limit), by door.", []string{"door"}, nil),
		httpRefused: prometheus.NewDesc("nexo_http_refused_total",
			"HTTP requests answered with a 4xx status (foreign origin, wrong host or content type, too large, bad token...), by door and status.",
			[]string{"door", "status"}, nil),
		handshakeFailed: prometheus.NewDesc("nexo_handshakes_failed_total",
			"Native connections closed before their session began (no HELLO in time, TLS failed, a bad first frame...), by reason.",
			[]string{"reason"}, nil),
		httpUnserved: prometheus.NewDesc("nexo_http_unserved_total",
			"HTTP connections closed before a request was read whole (headers too slow, too large or malformed), by door.", []string{"door"}, nil),
		ready: prometheus.NewDesc("nexo_ready",
			"1 while the server accepts new connections (what /readyz says); 0 while it drains.", nil, nil),
		parked: prometheus.NewDesc("nexo_parked_clients",
			"Clients that hold no goroutine: held by an event loop (--core loop: plain-TCP native and legacy clients), or idle native clients parked in the poller (--core goroutine).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.duration, c.rtt, c.clients, c.accepted, c.rejected, c.closed,
		c.bytesIn, c.bytesOut, c.buildInfo, c.authFailures, c.parked, c.httpRefused, c.handshakeFailed, c.httpUnserved, c.ready} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.srv.Metrics()
	for _, mm := range m.Methods {
		for code, n := range mm.Codes {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n), mm.Name, code)
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, mm.Duration.Count, mm.Duration.Sum, cumulative(server.DurationBuckets, mm.Duration), mm.Name)
	}
	ch <- prometheus.MustNewConstHistogram(c.rtt, m.RTT.Count, m.RTT.Sum, cumulative(server.RTTBuckets, m.RTT))
	for _, d := range m.Doors {
		ch <- prometheus.MustNewConstMetric(c.clients, prometheus.GaugeValue, float64(d.Clients), d.Door)
		ch <- prometheus.MustNewConstMetric(c.bytesIn, prometheus.CounterValue, float64(d.BytesIn), d.Door)
		ch <- prometheus.MustNewConstMetric(c.bytesOut, prometheus.CounterValue, float64(d.BytesOut), d.Door)
		ch <- prometheus.MustNewConstMetric(c.accepted, prometheus.CounterValue, float64(d.Accepted), d.Door)
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(d.Rejected), d.Door)
		ch <- prometheus.MustNewConstMetric(c.authFailures, prometheus.CounterValue, float64(d.AuthFailures), d.Door)
		if d.Door == "web" || d.Door == Door {
			ch <- prometheus.MustNewConstMetric(c.httpUnserved, prometheus.CounterValue, float64(d.HTTPUnserved), d.Door)
		}
		for status, n := range d.HTTPRefused {
			ch <- prometheus.MustNewConstMetric(c.httpRefused, prometheus.CounterValue, float64(n), d.Door, strconv.Itoa(status))
		}
	}
	for reason, n := range m.Closed {
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(n), reason)
	}
	for reason, n := range m.HandshakeFailed {
		ch <- prometheus.MustNewConstMetric(c.handshakeFailed, prometheus.CounterValue, float64(n), reason)
	}
	build := buildinfo.Read()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, m.Version, build.Commit, strconv.FormatBool(build.Dirty), runtime.Version())
	ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(m.Parked))
	ready := 0.0
	if c.srv.Accepting() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
}

// cumulative returns the Prometheus form of a histogram snapshot: upper
// bound to cumulative count, +Inf left out.
func cumulative(bounds []float64, h server.Histogram) map[float64]uint64 {
	out := make(map[float64]uint64, len(bounds))
	var c uint64
	for i, ub := range bounds {
		c += h.Counts[i]
		out[ub] = c
	}
	return out
}
