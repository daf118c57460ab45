package backplane

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/natsembed"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// The load and the faults of TestChaos.
const (
	chaosClients  = 50  // connections to the gateway
	chaosRate     = 200 // requests per second per client
	chaosTick     = 5 * time.Millisecond
	chaosDeadline = 2 * time.Second // each request's DEADLINE
	// chaosCatchUp bounds the requests a client sends at one tick when
	// ticks came late: a writer starved by a loaded machine catches up
	// 50 ms, not a burst of seconds that its connection's in-flight limit
	// would refuse as BUSY.
	chaosCatchUp = 10
	// chaosGrace is how long past its deadline an answer may come before
	// the request counts as hung: the gateway's timer and the answer's
	// way back on a loaded 2-core machine under -race.
	chaosGrace   = time.Second
	chaosWorkers = 4               // worker processes alive, but for the moment of a kill
	chaosCut     = 2 * time.Second // how long NATS is away each time
	// chaosSilence is how long every connection must stay silent once
	// every request has its answer: a late twin of an answer would come
	// then.
	chaosSilence = time.Second
)

// chaosPlan reads the run's length from NEXO_CHAOS (6s when unset) and
// scales the faults with it: a kill every 3 s and a cut every 20 s, so
// that 60s is 20 kills and 3 cuts; at least 4 kills and 1 cut.
func chaosPlan(t *testing.T) (d time.Duration, kills, cuts int) {
	d = 6 * time.Second
	if v := os.Getenv("NEXO_CHAOS"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 6*time.Second {
			t.Fatalf("NEXO_CHAOS=%q: want a duration of 6s or more", v)
		}
	}
	kills = max(4, int((d+1500*time.Millisecond)/(3*time.Second)))
	cuts = max(1, int((d+10*time.Second)/(20*time.Second)))
	return d, kills, cuts
}

// chaosEvent is a fault the test injects at an offset from the start.
type chaosEvent struct {
	at  time.Duration
	cut bool // NATS away for chaosCut; otherwise kill -9 a worker
}

// chaosTimeline spreads the cuts evenly over d, and the kills evenly, with
// jitter, over the time left outside the cuts and the second after each,
// so that a replacement worker does not wait for NATS to come back.
func chaosTimeline(r *rand.Rand, d time.Duration, kills, cuts int) []chaosEvent {
	type span struct{ from, to time.Duration }
	var events []chaosEvent
	var free []span
	from := time.Duration(0)
	for i := range cuts {
		at := d*time.Duration(2*i+1)/time.Duration(2*cuts) - chaosCut/2
		events = append(events, chaosEvent{at: at, cut: true})
		free = append(free, span{from, at})
		from = at + chaosCut + time.Second
	}
	free = append(free, span{from, d})
	var total time.Duration
	for _, f := range free {
		total += f.to - f.from
	}
	step := total / time.Duration(kills)
	for i := range kills {
		x := step*time.Duration(i) + step/4 + time.Duration(r.Int64N(int64(step/2)))
		for _, f := range free {
			if x < f.to-f.from {
				events = append(events, chaosEvent{at: f.from + x})
				break
			}
			x -= f.to - f.from
		}
	}
	slices.SortFunc(events, func(a, b chaosEvent) int { return int(a.at - b.at) })
	return events
}

// chaosReq is what a client records of one request.
type chaosReq struct {
	o       op
	sent    time.Duration // since the run began, just before the write
	end     time.Duration // when the first answer came; 0 while none
	code    wire.Code     // the first answer's error code; 0 for a RESPONSE
	right   bool          // the first answer is the right one (check)
	answers int
}

// explicit reports whether the first answer is an explicit failure: the
// gateway could not have the request served (UNAVAILABLE), not in time
// (TIMEOUT), or not now (BUSY). Any other answer that is not right is
// wrong.
func (r *chaosReq) explicit() bool {
	return !r.right && (r.code == wire.CodeUnavailable || r.code == wire.CodeTimeout || r.code == wire.CodeBusy)
}

// chaosClient is one connection: a paced writer, and a reader that
// records every answer.
type chaosClient struct {
	c       *nexotest.Conn
	closing atomic.Bool // set before the test closes c

	mu       sync.Mutex
	reqs     []chaosReq    // guarded by mu: request id i+1 is reqs[i]
	answered int           // guarded by mu
	done     bool          // guarded by mu: the writer has stopped
	complete chan struct{} // closed once done and every request answered
	problems []string      // guarded by mu: the first wrong answers, duplicates, I/O errors
	dups     int           // guarded by mu
	skipped  int           // guarded by mu: requests due that the writer did not catch up on
}

// problem records a failure of the client, keeping the first few. Call
// it with mu held.
func (cl *chaosClient) problem(format string, args ...any) {
	if len(cl.problems) < 10 {
		cl.problems = append(cl.problems, fmt.Sprintf(format, args...))
	}
}

// write sends chaosRate requests a second, a random math op each, until
// halt is closed. A tick that comes late sends the requests due since,
// up to chaosCatchUp, so that the rate holds when the machine is slow.
func (cl *chaosClient) write(r *rand.Rand, begin time.Time, halt <-chan struct{}) {
	defer func() {
		cl.mu.Lock()
		cl.done = true
		if cl.answered == len(cl.reqs) {
			close(cl.complete)
		}
		cl.mu.Unlock()
	}()
	tick := time.NewTicker(chaosTick)
	defer tick.Stop()
	due := 0 // requests due since begin, sent or skipped
	var b, operands []byte
	for {
		var now time.Time
		select {
		case <-halt:
			return
		case now = <-tick.C:
		}
		n := int(now.Sub(begin)*chaosRate/time.Second) - due
		due += n
		b = b[:0]
		cl.mu.Lock()
		cl.skipped += max(n-chaosCatchUp, 0)
		for range min(n, chaosCatchUp) {
			o := randomOp(r)
			cl.reqs = append(cl.reqs, chaosReq{o: o, sent: time.Since(begin)})
			operands = calc.AppendOperands(operands[:0], o.a, o.b)
			b = wire.AppendRequestDeadline(b, uint32(len(cl.reqs)), uint32(chaosDeadline/time.Millisecond), o.method, operands)
		}
		cl.mu.Unlock()
		if _, err := cl.c.Write(b); err != nil {
			cl.mu.Lock()
			cl.problem("write: %v", err)
			cl.mu.Unlock()
			return
		}
	}
}

// read records every answer until the connection is closed.
func (cl *chaosClient) read(begin time.Time) {
	for {
		f, err := cl.c.Rd.ReadFrame()
		if err != nil {
			if !cl.closing.Load() {
				cl.mu.Lock()
				cl.problem("read: %v", err)
				cl.mu.Unlock()
			}
			return
		}
		if f.Type == wire.TypePing {
			continue
		}
		end := time.Since(begin)
		cl.mu.Lock()
		cl.record(f, end)
		cl.mu.Unlock()
	}
}

// record notes an answer that came at end. Call it with mu held.
func (cl *chaosClient) record(f wire.Frame, end time.Duration) {
	if f.Type != wire.TypeResponse && f.Type != wire.TypeError || f.ID == 0 || int(f.ID) > len(cl.reqs) {
		cl.problem("a frame that answers no request sent: %s", nexotest.String(f))
		return
	}
	r := &cl.reqs[f.ID-1]
	if r.answers++; r.answers > 1 {
		cl.dups++
		cl.problem("request %d answered again, %v after it was sent: %s", f.ID, end-r.sent, nexotest.String(f))
		return
	}
	r.end, r.code = end, errorCode(f)
	err := check(f, r.o)
	r.right = err == nil
	if !r.right && !r.explicit() {
		cl.problem("request %d: %v", f.ID, err)
	}
	if cl.answered++; cl.done && cl.answered == len(cl.reqs) {
		close(cl.complete)
	}
}

// chaosOutage is one NATS cut, as offsets from the start: told to stop at
// down, stopped at stopped, started again at up, and gateway and workers
// all reconnected, with their subscriptions, at back.
type chaosOutage struct{ down, stopped, up, back time.Duration }

// workerSubs returns the subscription count of each worker connected to
// the NATS server.
func workerSubs(t *testing.T, ns *natsembed.Server) []uint32 {
	t.Helper()
	cz, err := ns.Connz(&natsserver.ConnzOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var subs []uint32
	for _, c := range cz.Conns {
		if c.Name == "child worker" { // runChildWorker's connection
			subs = append(subs, c.NumSubs)
		}
	}
	return subs
}

// TestChaos: 50 clients send 200 requests a second each through one
// gateway to worker processes, while workers are killed with kill -9 and
// replaced, and NATS is stopped for 2 s at a time. Every request gets
// exactly one answer, within its deadline and a grace, and none is
// wrong; every request that lived within an outage got UNAVAILABLE or
// TIMEOUT; and of the requests whose lives did not overlap an outage
// (from NATS stopping until gateway and workers are all back with their
// subscriptions), at least 99.9% are served. 6 s with 4 kills and 1 cut
// by default; NEXO_CHAOS=60s runs 60 s with 20 kills and 3 cuts.
func TestChaos(t *testing.T) {
	if raceEnabled && os.Getenv("NEXO_CHAOS") == "" {
		// Its answers must come within their deadline, which the race
		// detector's slowdown beside other packages' tests (go test runs
		// two at once) can break without any fault of the cluster's. CI
		// runs it for 60 s on its own; NEXO_CHAOS runs it here anyway.
		t.Skip("under -race, only with NEXO_CHAOS set")
	}
	d, nKills, nCuts := chaosPlan(t)
	seed := uint64(time.Now().UnixNano()) // logged: it decides the victims and the schedule
	rng := rand.New(rand.NewPCG(seed, 14))
	timeline := chaosTimeline(rng, d, nKills, nCuts)

	addr := nexotest.FreeAddr(t) // NATS comes back on the same address
	ns := startNATS(t, addr)
	workers := make([]childWorker, chaosWorkers)
	for i := range workers {
		workers[i] = startChildWorker(t, ns.URL())
	}
	g := startGateway(t, ns.URL(), "chaos", 0) // retries after DefaultRetryAfter
	// Every worker has the same subscriptions: once every worker has them
	// again after a cut, NATS routes to all of them.
	subs := workerSubs(t, ns)
	if len(subs) != chaosWorkers || slices.Min(subs) != slices.Max(subs) || subs[0] == 0 {
		t.Fatalf("worker subscriptions %v", subs)
	}
	wantSubs := subs[0]

	clients := make([]*chaosClient, chaosClients)
	for i := range clients {
		c, _ := nexotest.Hello(t, g.Native, fmt.Sprintf("chaos-%d", i))
		if err := c.SetReadDeadline(time.Time{}); err != nil { // Hello's read set one
			t.Fatal(err)
		}
		clients[i] = &chaosClient{c: c, complete: make(chan struct{}),
			reqs: make([]chaosReq, 0, int(d/time.Second+1)*chaosRate)}
	}
	begin := time.Now()
	halt := make(chan struct{})
	var wg sync.WaitGroup
	for i, cl := range clients {
		r := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
		wg.Go(func() { cl.write(r, begin, halt) })
		wg.Go(func() { cl.read(begin) })
	}

	// The faults, on the test's goroutine: starting a worker may fail
	// the test. The load goes on until they are over.
	var outages []chaosOutage
	kills := 0
	var slowestStart time.Duration // of a replacement worker
	wait := func(until time.Time) {
		if left := time.Until(until); left > 0 {
			<-time.After(left)
		}
	}
	for _, ev := range timeline {
		wait(begin.Add(ev.at))
		if !ev.cut {
			i := rng.IntN(len(workers))
			if err := workers[i].Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = workers[i].Wait() // "signal: killed"
			kills++
			start := time.Now()
			workers[i] = startChildWorker(t, ns.URL())
			slowestStart = max(slowestStart, time.Since(start))
			continue
		}
		var o chaosOutage
		o.down = time.Since(begin)
		ns.Stop()
		o.stopped = time.Since(begin)
		wait(begin.Add(o.down + chaosCut))
		o.up = time.Since(begin)
		ns = startNATS(t, addr)
		nexotest.WaitFor(t, 20*time.Second, "the gateway and every worker to reconnect", func() bool {
			if !g.gw.nc.IsConnected() {
				return false
			}
			subs := workerSubs(t, ns)
			return len(subs) == len(workers) && slices.Min(subs) == wantSubs
		})
		o.back = time.Since(begin)
		outages = append(outages, o)
	}
	wait(begin.Add(d))
	close(halt)
	stopped := time.Now()

	// Every request has its answer by its deadline and the grace, or it
	// is hung; then every connection stays silent for a while, or a twin
	// of an answer shows.
	timeout := time.After(time.Until(stopped.Add(chaosDeadline + chaosGrace)))
	for _, cl := range clients {
		select {
		case <-cl.complete:
			continue
		case <-timeout:
		}
		break
	}
	<-time.After(chaosSilence)
	for _, cl := range clients {
		cl.closing.Store(true)
		cl.c.Close()
	}
	wg.Wait()

	// The figures. A request is excluded from the success rate when its
	// life (from sent to answered, or to its deadline and grace if it has
	// no answer) overlaps an outage, from NATS stopping until everybody is
	// back.
	var sent, skipped, served, explicit, wrong, hung, late, dups, excluded, excludedServed, inside, insideExplicit int
	codes := map[wire.Code]int{}
	var problems []string
	var slowest time.Duration
	for _, cl := range clients {
		problems = append(problems, cl.problems...)
		dups += cl.dups
		skipped += cl.skipped
		for i := range cl.reqs {
			r := &cl.reqs[i]
			sent++
			until := r.end
			switch {
			case r.answers == 0:
				hung++
				until = r.sent + chaosDeadline + chaosGrace
				if hung <= 10 {
					problems = append(problems, fmt.Sprintf("%s(%d, %d) sent at %v: no answer", r.o.method, r.o.a, r.o.b, r.sent))
				}
			case r.right:
				served++
			case r.explicit():
				explicit++
				codes[r.code]++
			default:
				wrong++
			}
			if r.answers > 0 {
				slowest = max(slowest, r.end-r.sent)
				if r.end-r.sent > chaosDeadline+chaosGrace {
					late++
				}
			}
			out := false
			for _, o := range outages {
				out = out || r.sent < o.back && until > o.down
				if r.sent >= o.stopped && r.answers > 0 && r.end <= o.up {
					inside++
					if r.code == wire.CodeUnavailable || r.code == wire.CodeTimeout {
						insideExplicit++
					}
				}
			}
			if out {
				excluded++
				if r.right {
					excludedServed++
				}
			}
		}
	}
	counted, countedServed := sent-excluded, served-excludedServed
	rate := 0.0
	if counted > 0 {
		rate = 100 * float64(countedServed) / float64(counted)
	}
	st := g.gw.Stats()
	var byCode, windows []string
	for _, c := range slices.Sorted(maps.Keys(codes)) {
		byCode = append(byCode, fmt.Sprintf("%v %d", c, codes[c]))
	}
	for _, o := range outages {
		windows = append(windows, fmt.Sprintf("%.1fs–%.1fs, all back %v after", o.down.Seconds(), o.up.Seconds(), (o.back-o.up).Round(time.Millisecond)))
	}
	t.Logf("chaos %v (load for %v, seed %d): %d clients at %d/s, deadline %v; kills %d (replacements ready within %v); cuts %d of %v each (%s)",
		d, stopped.Sub(begin).Round(time.Millisecond), seed, chaosClients, chaosRate, chaosDeadline,
		kills, slowestStart.Round(time.Millisecond), len(outages), chaosCut, strings.Join(windows, "; "))
	t.Logf("requests sent %d (%d more were due but skipped by late ticks): succeeded %d, explicit errors %d (%s), wrong %d, hung %d, late %d, duplicates %d; slowest answer %v",
		sent, skipped, served, explicit, strings.Join(byCode, ", "), wrong, hung, late, dups, slowest.Round(time.Millisecond))
	t.Logf("excluded %d whose lives overlap an outage (%d of them succeeded); %d lived inside one, %d of them got UNAVAILABLE or TIMEOUT",
		excluded, excludedServed, inside, insideExplicit)
	t.Logf("success outside the outages: %d of %d = %.3f%%", countedServed, counted, rate)
	t.Logf("gateway: sent %d in %d messages, retried %d, unavailable %d, timed out %d, waiting %d",
		st.Sent, st.Messages, st.Retried, st.Unavailable, st.TimedOut, st.Waiting)

	for _, p := range problems {
		t.Error(p)
	}
	if wrong != 0 || hung != 0 || late != 0 || dups != 0 {
		t.Errorf("%d wrong, %d hung, %d late, %d duplicates: want none", wrong, hung, late, dups)
	}
	if nCuts > 0 && inside == 0 {
		t.Error("no request was sent and answered while NATS was down: the outages were not tested")
	}
	if inside != insideExplicit {
		t.Errorf("of %d requests sent and answered while NATS was down, %d got UNAVAILABLE or TIMEOUT: want all", inside, insideExplicit)
	}
	if counted == 0 || rate < 99.9 {
		t.Errorf("%.3f%% of %d requests outside the outages succeeded: want at least 99.9%%", rate, counted)
	}
	if st.Waiting != 0 {
		t.Errorf("the gateway still waits for %d answers", st.Waiting)
	}
}
