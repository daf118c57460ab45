package server

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/nexo-project/nexo/internal/service"
	"github.com/nexo-project/nexo/wire"
)

// Door names, as shown in the client list and in metric labels.
const (
	DoorNative = "native"
	DoorLegacy = "legacy"
	DoorWS     = "ws"   // JSON-RPC over WebSocket
	DoorHTTP   = "http" // JSON-RPC over POST /rpc: stateless, never listed
)

// doors lists every door, in metric order.
var doors = [...]string{DoorNative, DoorLegacy, DoorWS, DoorHTTP}

func doorIndex(door string) int {
	for i, d := range doors {
		if d == door {
			return i
		}
	}
	return 0
}

// unknownMethod is the method label of requests for methods that do not
// exist: their names come from clients and must not become label values.
const unknownMethod = "unknown"

// codeSlots is one counter per result code; slot 0 is success.
const codeSlots = 16

// durationBuckets suit nexo's requests: microseconds in-process, up to
// seconds for slow handlers and backends.
var durationBuckets = prometheus.ExponentialBucketsRange(2e-6, 10, nBuckets)

// nBuckets is the number of durationBuckets.
const nBuckets = 28

// metrics are the server's counters. The hot path only touches atomics and
// pre-resolved histograms; the Prometheus collector reads the atomics at
// scrape time.
type metrics struct {
	accepted [len(doors)]atomic.Uint64
	rejected [len(doors)]atomic.Uint64
	// authFailures counts refused credentials (a wrong or missing token).
	authFailures [len(doors)]atomic.Uint64
	byReason     [len(reasonNames)]atomic.Uint64
	// bytes of sessions that have closed; live sessions are summed at scrape
	closedIn  [len(doors)]atomic.Uint64
	closedOut [len(doors)]atomic.Uint64

	methods sync.Map // method name -> *methodStat
	rtt     prometheus.Histogram
}

// methodStat counts one method's requests by result code, and their
// durations; both sharded (see shards).
type methodStat struct {
	codes [shards]codeShard
	dur   durHist
}

// codeShard is one shard of a method's counters by result code.
type codeShard struct {
	n [codeSlots]atomic.Uint64
	_ [64]byte
}

// count returns the requests answered with a result code, all shards.
func (st *methodStat) count(slot int) uint64 {
	var n uint64
	for i := range st.codes {
		n += st.codes[i].n[slot].Load()
	}
	return n
}

func newMetrics() *metrics {
	return &metrics{
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nexo_heartbeat_rtt_seconds", Help: "Heartbeat PING to PONG round trip.",
			Buckets: prometheus.ExponentialBucketsRange(20e-6, 10, 20),
		}),
	}
}

func (m *metrics) closed(r closeReason) {
	if int(r) < len(m.byReason) {
		m.byReason[r].Add(1)
	}
}

// stat returns the counters of the named method, creating them once.
func (m *metrics) stat(name string) *methodStat {
	if v, ok := m.methods.Load(name); ok {
		return v.(*methodStat)
	}
	v, _ := m.methods.LoadOrStore(name, &methodStat{})
	return v.(*methodStat)
}

// statOf returns the counters of a method (nil: an unknown one).
func (m *metrics) statOf(meth *service.Method) *methodStat {
	if meth == nil {
		return m.stat(unknownMethod)
	}
	return m.stat(meth.Name)
}

// observe counts one answered request in a shard; d is how long it took
// from being read.
func (m *metrics) observe(shard int, meth *service.Method, code wire.Code, d time.Duration) {
	m.record(shard, m.statOf(meth), code, d)
}

// record counts one answered request of a method in a shard.
func (m *metrics) record(shard int, st *methodStat, code wire.Code, d time.Duration) {
	slot := int(code)
	if slot >= codeSlots {
		slot = codeSlots - 1
	}
	st.codes[shard%shards].n[slot].Add(1)
	st.dur.observe(shard, d)
}

// requests returns the total of answered requests, all methods and codes.
func (m *metrics) requests() uint64 {
	var n uint64
	m.methods.Range(func(_, v any) bool {
		st := v.(*methodStat)
		for i := range codeSlots {
			n += st.count(i)
		}
		return true
	})
	return n
}

// bucketCounts appends the cumulative bucket counts of every request's
// duration and then their total, for the live p99.
func (m *metrics) bucketCounts(dst []uint64) []uint64 {
	// The sum of the methods' histograms: one histogram of every request
	// would cost the hot path a second observation per request.
	var counts [nBuckets + 1]uint64
	var total uint64
	m.methods.Range(func(_, v any) bool {
		c, n, _ := v.(*methodStat).dur.snapshot()
		for i := range counts {
			counts[i] += c[i]
		}
		total += n
		return true
	})
	var c uint64
	for i := range durationBuckets {
		c += counts[i]
		dst = append(dst, c)
	}
	return append(dst, total)
}

// codeName is the label value of a result code.
func codeName(slot int) string {
	if slot == 0 {
		return "OK"
	}
	return wire.Code(slot).String()
}

// collector exposes the server's counters to Prometheus.
type collector struct {
	srv                                  *Server
	requests, duration                   *prometheus.Desc
	clients, accepted, rejected          *prometheus.Desc
	closed, bytesIn, bytesOut, buildInfo *prometheus.Desc
	authFailures, parked                 *prometheus.Desc
}

func newCollector(srv *Server) *collector {
	return &collector{
		srv:      srv,
		requests: prometheus.NewDesc("nexo_requests_total", "Requests answered, by method and result code.", []string{"method", "code"}, nil),
		duration: prometheus.NewDesc("nexo_request_duration_seconds", "Time from reading a request to queueing its answer, by method.",
			[]string{"method"}, nil),
		clients:   prometheus.NewDesc("nexo_clients", "Clients connected now, by door.", []string{"door"}, nil),
		accepted:  prometheus.NewDesc("nexo_connections_accepted_total", "Connections accepted, by door.", []string{"door"}, nil),
		rejected:  prometheus.NewDesc("nexo_connections_rejected_total", "Connections refused over a limit, by door.", []string{"door"}, nil),
		closed:    prometheus.NewDesc("nexo_connections_closed_total", "Sessions closed, by reason.", []string{"reason"}, nil),
		bytesIn:   prometheus.NewDesc("nexo_received_bytes_total", "Bytes received from clients, by door.", []string{"door"}, nil),
		bytesOut:  prometheus.NewDesc("nexo_sent_bytes_total", "Bytes sent to clients, by door.", []string{"door"}, nil),
		buildInfo: prometheus.NewDesc("nexo_build_info", "Always 1; the labels tell the build.", []string{"version", "goversion"}, nil),
		authFailures: prometheus.NewDesc("nexo_auth_failures_total",
			"Authentications refused (wrong or missing token, or an address over its failure limit), by door.", []string{"door"}, nil),
		parked: prometheus.NewDesc("nexo_parked_clients",
			"Idle native clients that hold no goroutine: the server's poller waits for their input.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.duration, c.clients, c.accepted, c.rejected, c.closed, c.bytesIn, c.bytesOut, c.buildInfo, c.authFailures, c.parked} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.srv.metrics
	m.methods.Range(func(k, v any) bool {
		st := v.(*methodStat)
		for i := range codeSlots {
			if n := st.count(i); n > 0 {
				ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n), k.(string), codeName(i))
			}
		}
		counts, total, sum := st.dur.snapshot()
		ch <- prometheus.MustNewConstHistogram(c.duration, total, sum, cumulative(counts), k.(string))
		return true
	})
	var clients [len(doors)]int
	in, out := c.srv.bytesByDoor()
	for _, s := range c.srv.table.appendLive(nil) {
		clients[doorIndex(s.door)]++
	}
	for i, d := range doors {
		if d != DoorHTTP {
			ch <- prometheus.MustNewConstMetric(c.clients, prometheus.GaugeValue, float64(clients[i]), d)
			ch <- prometheus.MustNewConstMetric(c.bytesIn, prometheus.CounterValue, float64(in[i]), d)
			ch <- prometheus.MustNewConstMetric(c.bytesOut, prometheus.CounterValue, float64(out[i]), d)
		}
		ch <- prometheus.MustNewConstMetric(c.accepted, prometheus.CounterValue, float64(m.accepted[i].Load()), d)
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(m.rejected[i].Load()), d)
		ch <- prometheus.MustNewConstMetric(c.authFailures, prometheus.CounterValue, float64(m.authFailures[i].Load()), d)
	}
	for r := range m.byReason {
		if r != int(reasonNone) {
			ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(m.byReason[r].Load()), closeReason(r).String())
		}
	}
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.srv.cfg.Version, runtime.Version())
	var parked int
	if p := c.srv.poll.Load(); p != nil {
		parked = p.count()
	}
	ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(parked))
}

// bytesByDoor returns the bytes received and sent per door: closed
// sessions' totals plus the live sessions' counters.
func (s *Server) bytesByDoor() (in, out [len(doors)]uint64) {
	for i := range doors {
		in[i] = s.metrics.closedIn[i].Load()
		out[i] = s.metrics.closedOut[i].Load()
	}
	for _, sess := range s.table.appendLive(nil) {
		i := doorIndex(sess.door)
		in[i] += sess.bytesIn.Load()
		out[i] += sess.out.Written()
	}
	return in, out
}

// newRegistry returns the Prometheus registry behind Gatherer: the
// server's metrics plus the Go runtime's and the process's.
func newRegistry(srv *Server) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(
		newCollector(srv),
		srv.metrics.rtt,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return r
}

// Gatherer returns the server's Prometheus metrics, for /metrics.
func (s *Server) Gatherer() prometheus.Gatherer { return s.promReg }

// RegisterMetrics adds the metrics of a component that serves through this
// server (a gateway's forwarder) to /metrics.
func (s *Server) RegisterMetrics(c prometheus.Collector) error { return s.promReg.Register(c) }
