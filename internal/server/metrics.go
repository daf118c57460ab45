package server

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The server's counters. The hot path only touches atomics, sharded so
// that cores rarely share a cache line; Metrics turns them into a plain
// snapshot, which the admin listener exposes to Prometheus. Nothing here
// knows Prometheus.

// unknownMethod is the method name of requests for methods that do not
// exist: their names come from clients and must not become label values.
const unknownMethod = "unknown"

// codeSlots is one counter per result code; slot 0 is success, and the
// last slot counts every application code (1000..65535) together.
const codeSlots = 16

// DurationBuckets are the upper bounds, in seconds, of the request
// duration histograms: microseconds in-process, up to seconds for slow
// handlers and backends (28 bounds, exponential from 2µs to 10s).
var DurationBuckets = exponentialRange(2e-6, 10, nBuckets)

// RTTBuckets are the upper bounds, in seconds, of the heartbeat round-trip
// histogram (20 bounds, exponential from 20µs to 10s).
var RTTBuckets = exponentialRange(20e-6, 10, 20)

// nBuckets is the number of DurationBuckets.
const nBuckets = 28

// exponentialRange returns n bounds growing by a constant factor from min
// to max.
func exponentialRange(min, max float64, n int) []float64 {
	factor := math.Pow(max/min, 1/float64(n-1))
	out := make([]float64, n)
	v := min
	for i := range out {
		out[i] = v
		v *= factor
	}
	return out
}

// metrics are the server's counters.
type metrics struct {
	byReason        [len(reasonNames)]atomic.Uint64
	handshakeFailed [nFailures]atomic.Uint64 // native connections that never became sessions, by why
	opened          atomic.Uint64            // sessions registered

	mu      sync.Mutex
	doors   atomic.Pointer[[]*doorStats] // copy on write under mu: every door seen, in order
	methods sync.Map                     // method name -> *methodStat
	rtt     *durHist
}

// doorStats are one door's counters.
type doorStats struct {
	name         string
	accepted     atomic.Uint64      // connections admitted
	rejected     atomic.Uint64      // connections refused over a limit
	authFailures atomic.Uint64      // refused credentials
	http4xx      [100]atomic.Uint64 // HTTP requests answered 400..499 (see HTTPServer)
	unserved     atomic.Uint64      // HTTP connections closed before a request reached the handler
	live         atomic.Int64       // sessions in the table (sessionTable keeps it)
	upgrades     atomic.Bool        // its connections are another door's, upgraded (AddUpgradeDoor)
	// bytes of sessions that have closed; live sessions are summed at
	// snapshot time
	closedIn, closedOut atomic.Uint64
}

// methodStat counts one method's requests by result code, and their
// durations; both sharded (see shards).
type methodStat struct {
	codes [shards]codeShard
	dur   *durHist
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
	m := &metrics{rtt: newDurHist(RTTBuckets)}
	m.doors.Store(new([]*doorStats))
	return m
}

// door returns the counters of a door, creating them once.
func (m *metrics) door(name string) *doorStats {
	for _, d := range *m.doors.Load() {
		if d.name == name {
			return d
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.doors.Load()
	for _, d := range old {
		if d.name == name {
			return d
		}
	}
	d := &doorStats{name: name}
	list := append(slices.Clip(old), d)
	m.doors.Store(&list)
	return d
}

// clientsByDoor adds the live sessions of each door that has any to
// byDoor, and returns how many there are in all: from the doors' counts,
// which the session table keeps, without a walk of the sessions (the
// live stats ask every second).
func (m *metrics) clientsByDoor(byDoor map[string]int) int {
	total := 0
	for _, d := range m.doorList() {
		if n := int(d.live.Load()); n != 0 { // below 0 would be a bug: shown, not hidden
			byDoor[d.name] += n
			total += n
		}
	}
	return total
}

// refusedHTTP returns the 4xx answers counted, by status, or nil.
func (d *doorStats) refusedHTTP() map[int]uint64 {
	var out map[int]uint64
	for i := range d.http4xx {
		if n := d.http4xx[i].Load(); n > 0 {
			if out == nil {
				out = map[int]uint64{}
			}
			out[400+i] = n
		}
	}
	return out
}

// doorList returns every door's counters.
func (m *metrics) doorList() []*doorStats { return *m.doors.Load() }

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
	v, _ := m.methods.LoadOrStore(name, &methodStat{dur: newDurHist(DurationBuckets)})
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
	m.recordN(shard, st, code, d, 1)
}

// recordN counts n answered requests of a method with the same code in a
// shard, each taking d.
func (m *metrics) recordN(shard int, st *methodStat, code wire.Code, d time.Duration, n int) {
	slot := int(code)
	if slot >= codeSlots {
		slot = codeSlots - 1
	}
	st.codes[shard%shards].n[slot].Add(uint64(n))
	st.dur.observeN(shard, d, n)
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
		h := v.(*methodStat).dur.snapshot()
		for i := range counts {
			counts[i] += h.Counts[i]
		}
		total += h.Count
		return true
	})
	var c uint64
	for i := range DurationBuckets {
		c += counts[i]
		dst = append(dst, c)
	}
	return append(dst, total)
}

// Metrics is a snapshot of the server's counters, for exposition.
type Metrics struct {
	Version string
	Methods []MethodMetrics // by name
	Doors   []DoorMetrics   // in the order the doors first served
	Closed  map[string]uint64
	// HandshakeFailed counts the native connections closed before their
	// session began, by why: "timeout", "tls", "bad frame", "frame too
	// large", "unsupported version" or "closed" (by the peer). Wrong
	// tokens are counted as the door's AuthFailures instead.
	HandshakeFailed map[string]uint64
	Parked          int       // clients that hold no goroutine: on an event loop, or parked idle
	RTT             Histogram // heartbeat round trips, RTTBuckets
}

// MethodMetrics are one method's counters.
type MethodMetrics struct {
	Name     string
	Codes    map[string]uint64 // requests by result code name ("OK" for success); only codes seen
	Duration Histogram         // DurationBuckets
}

// DoorMetrics are one door's counters.
type DoorMetrics struct {
	Door                             string
	Clients                          int // connected now
	Accepted, Rejected, AuthFailures uint64
	BytesIn, BytesOut                uint64
	// HTTPRefused counts the HTTP requests answered with a 4xx status,
	// by status; only statuses seen (see Server.HTTPServer).
	HTTPRefused map[int]uint64
	// HTTPUnserved counts the HTTP connections closed before a request
	// reached the handler: headers too slow, too large or malformed.
	HTTPUnserved uint64
}

// Histogram is a snapshot of a histogram: per-bucket counts (not
// cumulative; one more than the bounds, the last for +Inf), the total
// count and the sum of the observations in seconds.
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Metrics returns a snapshot of the server's counters.
func (s *Server) Metrics() Metrics {
	m := s.metrics
	out := Metrics{Version: s.cfg.Version, Closed: make(map[string]uint64), RTT: m.rtt.snapshot()}
	m.methods.Range(func(k, v any) bool {
		st := v.(*methodStat)
		mm := MethodMetrics{Name: k.(string), Codes: make(map[string]uint64), Duration: st.dur.snapshot()}
		for i := range codeSlots {
			if n := st.count(i); n > 0 {
				mm.Codes[codeName(i)] = n
			}
		}
		out.Methods = append(out.Methods, mm)
		return true
	})
	slices.SortFunc(out.Methods, func(a, b MethodMetrics) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	doors := m.doorList()
	index := make(map[*doorStats]int, len(doors))
	for i, d := range doors {
		index[d] = i
		out.Doors = append(out.Doors, DoorMetrics{Door: d.name, Accepted: d.accepted.Load(), Rejected: d.rejected.Load(),
			AuthFailures: d.authFailures.Load(), BytesIn: d.closedIn.Load(), BytesOut: d.closedOut.Load(), HTTPRefused: d.refusedHTTP(), HTTPUnserved: d.unserved.Load()})
	}
	s.table.each(func(sess *session) {
		if i, ok := index[sess.door]; ok {
			dm := &out.Doors[i]
			dm.Clients++
			dm.BytesIn += sess.bytesIn.Load()
			dm.BytesOut += sess.out.Written()
		}
	})
	for r := range m.byReason {
		if r != int(reasonNone) {
			out.Closed[closeReason(r).String()] = m.byReason[r].Load()
		}
	}
	out.HandshakeFailed = make(map[string]uint64, nFailures)
	for i, name := range handshakeFailures {
		out.HandshakeFailed[name] = m.handshakeFailed[i].Load()
	}
	if p := s.poll.Load(); p != nil {
		out.Parked = p.count()
	}
	if ls := s.loops.Load(); ls != nil {
		out.Parked += ls.count()
	}
	return out
}

// codeName is the label value of a result code.
func codeName(slot int) string {
	switch slot {
	case 0:
		return "OK"
	case codeSlots - 1:
		return "APPLICATION"
	}
	return wire.Code(slot).String()
}
