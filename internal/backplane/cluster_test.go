package backplane

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// TestCluster: 2 gateways and 3 workers; pipelined clients on both
// gateways get every answer right, errors included, through every door;
// the load spreads over the workers and travels in batches.
func TestCluster(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	workers := []*Worker{startWorker(t, ns.URL()), startWorker(t, ns.URL()), startWorker(t, ns.URL())}
	gws := []*gateway{startGateway(t, ns.URL(), "gw-a", 0), startGateway(t, ns.URL(), "gw-b", 0)}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		c, _ := nexotest.Hello(t, gws[i%2].Native, fmt.Sprintf("load-%d", i))
		r := rand.New(rand.NewPCG(uint64(i), 7))
		wg.Go(func() {
			n, err := pipeline(c, 40, 64, func() op { return randomOp(r) }, nil)
			if err == nil && n != 40*64 {
				err = fmt.Errorf("%d answers, want %d", n, 40*64)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	c, _ := nexotest.Hello(t, gws[0].Native, "checks")
	if f := roundTrip(t, c, 1, 5000, "sys.echo", []byte("through NATS")); f.Type != wire.TypeResponse || string(f.Body) != "through NATS" {
		t.Errorf("sys.echo: %s", nexotest.String(f))
	}
	// A method no worker serves: UNKNOWN_METHOD (see
	// TestUnknownIsNotUnavailable), not a wait for the deadline.
	start := time.Now()
	if f := roundTrip(t, c, 2, 10000, "nobody.serves", nil); errorCode(f) != wire.CodeUnknownMethod {
		t.Errorf("unknown method: %s, want UNKNOWN_METHOD", nexotest.String(f))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("UNKNOWN_METHOD took %v: it waited for the deadline", d)
	}
	// A name that cannot be a NATS subject is never sent.
	if f := roundTrip(t, c, 3, 5000, "bad..name", nil); errorCode(f) != wire.CodeUnknownMethod {
		t.Errorf("bad subject: %s, want UNKNOWN_METHOD", nexotest.String(f))
	}
	// The server's own methods are answered by the gateway itself.
	var info struct{ Methods []string }
	if f := roundTrip(t, c, 4, 5000, "sys.info", nil); f.Type != wire.TypeResponse || json.Unmarshal(f.Body, &info) != nil ||
		!slices.Contains(info.Methods, "math.add") || !slices.Contains(info.Methods, "sys.info") {
		t.Errorf("sys.info: %s", nexotest.String(f))
	}

	// JSON-RPC over HTTP and the legacy door reach the workers too.
	resp, err := http.Post("http://"+gws[1].Web+"/rpc", "application/json",
		strings.NewReader(`[{"jsonrpc":"2.0","method":"math.mul","params":[6,7],"id":1},{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":2}]`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`"result":42`)) || !bytes.Contains(body, []byte("DIVISION_BY_ZERO")) {
		t.Errorf("/rpc through a gateway: %s", body)
	}
	lc := nexotest.Dial(t, gws[1].Legacy)
	if got := lc.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 40, 2)); got != "42\n" {
		t.Errorf("legacy 40+2 through a gateway = %q", got)
	}

	var served uint64
	for i, w := range workers {
		n := workerRequests(w)
		if n == 0 {
			t.Errorf("worker %d served nothing: the load did not spread", i)
		}
		served += n
	}
	var sent, messages uint64
	for _, g := range gws {
		st := g.gw.Stats()
		sent, messages = sent+st.Sent, messages+st.Messages
		if st.Waiting != 0 || st.Retried != 0 || st.TimedOut != 0 {
			t.Errorf("%s: %+v", g.gw.Name(), st)
		}
	}
	if served < 8*40*64 || messages*4 > sent {
		t.Errorf("workers served %d requests; gateways sent %d in %d messages: want ≥ %d requests and batches of 4 or more on average",
			served, sent, messages, 8*40*64)
	}
	t.Logf("%d requests in %d messages (%.1f per batch)", sent, messages, float64(sent)/float64(messages))
}

// workerRequests sums the requests a worker served, from its micro stats.
func workerRequests(w *Worker) uint64 {
	var n uint64
	for _, e := range w.svc.Stats().Endpoints {
		var d EndpointData
		if json.Unmarshal(e.Data, &d) == nil {
			n += d.Requests
		}
	}
	return n
}

// TestDeadlines: a request whose deadline passes while a worker has it is
// answered TIMEOUT by the gateway; a worker does not run a request whose
// deadline passed before it got there.
func TestDeadlines(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	var ran atomicCounter
	startWorker(t, ns.URL(), ran.method())
	g := startGateway(t, ns.URL(), "gw", 0)
	c, _ := nexotest.Hello(t, g.Native, "deadlines")

	start := time.Now()
	if f := roundTrip(t, c, 1, 100, "test.sleep", nexotest.Ms(2000)); errorCode(f) != wire.CodeTimeout {
		t.Errorf("sleep 2s with a 100 ms deadline: %s, want TIMEOUT", nexotest.String(f))
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("TIMEOUT came after %v, not at the deadline", d)
	}

	// Straight to the worker, as any NATS client may: a deadline in the
	// past is refused without running the handler.
	nc := dialNATS(t, ns.URL())
	msg := &nats.Msg{Subject: "nexo.svc.test.count", Header: nats.Header{DeadlineHeader: []string{fmt.Sprint(time.Now().Add(-time.Second).UnixMilli())}}}
	reply, err := nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Header.Get(micro.ErrorCodeHeader) != "10" || ran.n.Load() != 0 {
		t.Errorf("expired request: headers %v, ran %d times; want error code 10 (TIMEOUT) and no run", reply.Header, ran.n.Load())
	}
	// In time, and without any header at all: it runs.
	if reply, err := nc.Request("nexo.svc.test.count", nil, 5*time.Second); err != nil || string(reply.Data) != "1" {
		t.Errorf("plain request: %v %v", reply, err)
	}
	// A batch with one expired entry and one in time.
	b := appendRequestEntry(nil, time.Now().Add(-time.Second).UnixMilli(), nil)
	b = appendRequestEntry(b, time.Now().Add(time.Minute).UnixMilli(), nil)
	reply, err = nc.RequestMsg(&nats.Msg{Subject: "nexo.svc.test.count", Data: b, Header: nats.Header{BatchHeader: []string{"2"}}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code1, _, rest, err1 := nextResponseEntry(reply.Data)
	code2, body2, _, err2 := nextResponseEntry(rest)
	if err1 != nil || err2 != nil || code1 != wire.CodeTimeout || code2 != 0 || string(body2) != "2" {
		t.Errorf("batch answers: %v %v %q (%v %v); want TIMEOUT, then 2", code1, code2, body2, err1, err2)
	}
	// A batch whose count does not match its entries is refused whole.
	reply, err = nc.RequestMsg(&nats.Msg{Subject: "nexo.svc.test.count", Data: b, Header: nats.Header{BatchHeader: []string{"3"}}}, 5*time.Second)
	if err != nil || reply.Header.Get(micro.ErrorCodeHeader) != "5" {
		t.Errorf("short batch: %v %v, want BAD_PAYLOAD", reply, err)
	}
	// A Nexo-Batch that is not 1..1024 is refused too; it once crashed
	// the worker (a negative count reached make).
	for _, n := range []string{"0", "1025", "-1", "abc"} {
		reply, err = nc.RequestMsg(&nats.Msg{Subject: "nexo.svc.test.count", Data: b, Header: nats.Header{BatchHeader: []string{n}}}, 5*time.Second)
		if err != nil || reply.Header.Get(micro.ErrorCodeHeader) != "5" {
			t.Errorf("Nexo-Batch %s: %v %v, want BAD_PAYLOAD", n, reply, err)
		}
	}
	if _, err := nc.Request("nexo.svc.test.count", nil, 5*time.Second); err != nil {
		t.Errorf("the worker after bad batches: %v", err)
	}
}

// atomicCounter is "test.count": inline, answers how many times it ran.
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) method() service.Method {
	return service.Method{Name: "test.count", Inline: true,
		Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
			return fmt.Appendf(dst, "%d", c.n.Add(1)), nil
		}}
}

// TestNoWorkers: without workers every forwarded request is answered
// UNAVAILABLE at once, batches included.
func TestNoWorkers(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	g := startGateway(t, ns.URL(), "lonely", 0)
	c, _ := nexotest.Hello(t, g.Native, "nobody")
	var b []byte
	for id := uint32(1); id <= 20; id++ {
		b = wire.AppendRequestDeadline(b, id, 20000, "math.add", calc.AppendOperands(nil, 1, 2))
	}
	start := time.Now()
	c.Send(b)
	for range 20 {
		if f := c.Read(); errorCode(f) != wire.CodeUnavailable {
			t.Fatalf("%s, want UNAVAILABLE", nexotest.String(f))
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v; no responders must be known at once", d)
	}
	if st := g.gw.Stats(); st.Unavailable != 20 || st.Waiting != 0 {
		t.Errorf("stats %+v", st)
	}
	resp, err := http.Get("http://" + g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`nexo_forward_failures_total{code="UNAVAILABLE"} 20`, "nexo_forward_requests_total 20", "nexo_nats_connected 1"} {
		if !bytes.Contains(metrics, []byte(want+"\n")) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestWorkerKilled: kill -9 a worker process during a pipelined load of
// idempotent requests. Every request is answered exactly once and
// correctly: the ones the dead worker held are sent again to another.
func TestWorkerKilled(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	victim := startChildWorker(t, ns.URL())
	startChildWorker(t, ns.URL())
	startChildWorker(t, ns.URL())
	g := startGateway(t, ns.URL(), "gw", 200*time.Millisecond)

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	counts := make([]int, 6)
	for i := range 6 {
		c, _ := nexotest.Hello(t, g.Native, fmt.Sprintf("load-%d", i))
		r := rand.New(rand.NewPCG(uint64(i), 9))
		wg.Go(func() {
			next := func() op { return randomOp(r) }
			if i%2 == 1 { // half the clients call the slow method, so the victim holds requests when it dies
				next = func() op { a, b := r.Int64N(1000), r.Int64N(1000); return op{"test.slowadd", a, b, a + b, 0} }
			}
			var err error
			counts[i], err = pipeline(c, 1<<30, 32, next, &stop)
			if err == nil {
				err = silence(c, time.Second) // a late twin of an answer would show here
			}
			errs <- err
		})
	}
	// Kill the victim while it serves slow requests: it holds them for
	// 20 ms each, and more keep coming.
	select {
	case <-victim.busy:
	case <-time.After(10 * time.Second):
		t.Fatal("the victim never served a slow request")
	}
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	total := 0
	for i, n := range counts {
		if n == 0 {
			t.Errorf("client %d got no answer", i)
		}
		total += n
	}
	st := g.gw.Stats()
	t.Logf("%d answers; gateway %+v", total, st)
	if st.Retried == 0 {
		t.Error("no request was sent again: the kill did not catch a worker with requests in hand")
	}
	if st.Waiting != 0 || st.TimedOut != 0 || st.Unavailable != 0 {
		t.Errorf("gateway stats %+v: want nothing waiting, timed out or unavailable", st)
	}
}

// TestNATSRestart: while NATS is down, requests get UNAVAILABLE or
// TIMEOUT, never a hang; once it is back, gateways and workers reconnect
// by themselves and requests are served again.
func TestNATSRestart(t *testing.T) {
	addr := nexotest.FreeAddr(t)
	ns := startNATS(t, addr)
	startWorker(t, ns.URL())
	leaving := startWorker(t, ns.URL())
	g := startGateway(t, ns.URL(), "gw", 0)
	c, _ := nexotest.Hello(t, g.Native, "through the outage")
	id := uint32(0)
	add := func(deadlineMS uint32) wire.Frame {
		id++
		return roundTrip(t, c, id, deadlineMS, "math.add", calc.AppendOperands(nil, 20, 22))
	}
	if f := add(5000); f.Type != wire.TypeResponse {
		t.Fatalf("before the outage: %s", nexotest.String(f))
	}

	ns.Stop()
	// A worker told to stop while NATS is away stops at once: there is
	// nobody to answer and nothing to drain.
	nexotest.WaitFor(t, 5*time.Second, "the worker to notice", func() bool { return !leaving.nc.IsConnected() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stopStart := time.Now()
	if err := leaving.Stop(ctx); err != nil || time.Since(stopStart) > 5*time.Second {
		t.Errorf("stopping a worker without NATS: %v after %v", err, time.Since(stopStart))
	}
	for range 20 {
		start := time.Now()
		f := add(2000)
		if code := errorCode(f); code != wire.CodeUnavailable && code != wire.CodeTimeout {
			t.Fatalf("during the outage: %s, want UNAVAILABLE or TIMEOUT", nexotest.String(f))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("an answer during the outage took %v", d)
		}
	}
	// The cluster view says so too.
	resp, err := http.Get("http://" + g.Admin + "/api/clients?scope=cluster")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("cluster view during the outage: %s, want 503", resp.Status)
	}

	startNATS(t, addr) // same address: nobody is told
	nexotest.WaitFor(t, 20*time.Second, "service to resume", func() bool {
		return add(2000).Type == wire.TypeResponse
	})
}

// TestClusterClients: the cluster's client list, asked of either gateway,
// names every connected client and its gateway while clients come and go.
func TestClusterClients(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	w := startWorker(t, ns.URL())
	gws := []*gateway{startGateway(t, ns.URL(), "gw-a", 0), startGateway(t, ns.URL(), "gw-b", 0)}
	conns := map[string]*nexotest.Conn{}
	want := func() []string { // "gateway/name", sorted
		var out []string
		for k := range conns {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	ask := func(via *gateway) Cluster {
		c, _ := nexotest.Hello(t, via.Native, "")
		defer c.Close()
		f := roundTrip(t, c, 1, 10000, "sys.cluster", nil)
		var cl Cluster
		if f.Type != wire.TypeResponse || json.Unmarshal(f.Body, &cl) != nil {
			t.Fatalf("sys.cluster: %s", nexotest.String(f))
		}
		return cl
	}
	got := func(cl Cluster) []string {
		var out []string
		for _, ci := range cl.Clients {
			if ci.Name != "" { // the asking connection has no name
				out = append(out, ci.Gateway+"/"+ci.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 12 {
		if len(conns) > 0 && r.IntN(3) == 0 {
			for k, c := range conns { // one leaves
				c.Close()
				delete(conns, k)
				break
			}
		} else {
			gi := r.IntN(2)
			name := fmt.Sprintf("client-%d", step)
			c, _ := nexotest.Hello(t, gws[gi].Native, name)
			conns[[]string{"gw-a", "gw-b"}[gi]+"/"+name] = c
		}
		via := gws[step%2]
		nexotest.WaitFor(t, 10*time.Second, "the cluster list to match", func() bool {
			cl := ask(via)
			return slices.Equal(got(cl), want()) && cl.Totals.Gateways == 2 && cl.Totals.Workers == 1
		})
	}
	c := conns[want()[0]]
	if f := roundTrip(t, c, 1, 5000, "math.add", calc.AppendOperands(nil, 1, 2)); f.Type != wire.TypeResponse {
		t.Fatal(nexotest.String(f))
	}
	cl := ask(gws[0])
	if len(cl.Workers) != 1 || cl.Workers[0].ID != w.Info().ID || cl.Workers[0].Requests == 0 ||
		!slices.ContainsFunc(cl.Workers[0].Endpoints, func(e WorkerEndpoint) bool { return e.Method == "math.add" && e.Requests > 0 }) {
		t.Errorf("workers: %+v", cl.Workers)
	}
	if cl.Totals.Clients != len(cl.Clients) || len(cl.Gateways) != 2 || cl.Gateways[0].Gateway != "gw-a" {
		t.Errorf("totals %+v, gateways %d", cl.Totals, len(cl.Gateways))
	}

	// The admin door serves the same view.
	resp, err := http.Get("http://" + gws[1].Admin + "/api/clients?scope=cluster")
	if err != nil {
		t.Fatal(err)
	}
	var viaHTTP Cluster
	err = json.NewDecoder(resp.Body).Decode(&viaHTTP)
	resp.Body.Close()
	if err != nil || !slices.Equal(got(viaHTTP), want()) {
		t.Errorf("/api/clients?scope=cluster: %v, %v; want %v", got(viaHTTP), err, want())
	}
	// Only admins see it: a caller that is not gets UNKNOWN_METHOD, as
	// for sys.clients.
	if (&service.Caller{}).Trusted() {
		t.Fatal("an empty caller is trusted")
	}
	out, err := gws[0].Reg.Get("sys.cluster").Handler(context.Background(), service.Request{Caller: &service.Caller{}}, nil)
	if err == nil {
		t.Errorf("sys.cluster answered an untrusted caller: %s", out)
	}
}

// TestDrain: a worker told to stop finishes and answers the requests it
// holds; a gateway shutting down waits for its forwarded requests.
func TestDrain(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	w := startWorker(t, ns.URL())
	g := startGateway(t, ns.URL(), "gw", 0)
	c, _ := nexotest.Hello(t, g.Native, "patient")
	var b []byte
	for id := uint32(1); id <= 10; id++ {
		b = wire.AppendRequestDeadline(b, id, 10000, "test.sleep", nexotest.Ms(300))
	}
	c.Send(b)
	nexotest.WaitFor(t, 5*time.Second, "the worker to hold the requests", func() bool { return workerRequests(w) == 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(ctx) }()
	for range 10 {
		if f := c.Read(); f.Type != wire.TypeResponse || string(f.Body) != "slept" {
			t.Fatalf("during the worker's drain: %s", nexotest.String(f))
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("worker stop: %v", err)
	}

	w2 := startWorker(t, ns.URL())
	c2, _ := nexotest.Hello(t, g.Native, "patient too")
	c2.Send(wire.AppendRequestDeadline(nil, 1, 10000, "test.sleep", nexotest.Ms(300)))
	nexotest.WaitFor(t, 5*time.Second, "the worker to hold the request", func() bool { return workerRequests(w2) == 1 })
	shut := make(chan error, 1)
	go func() { shut <- g.Shutdown(ctx) }()
	f := c2.Read()
	if f.Type == wire.TypeGoodbye { // the server says it is going, then finishes what it holds
		f = c2.Read()
	}
	if f.Type != wire.TypeResponse || string(f.Body) != "slept" {
		t.Fatalf("during the gateway's drain: %s", nexotest.String(f))
	}
	if err := <-shut; err != nil {
		t.Errorf("gateway shutdown: %v", err)
	}
}

// TestDiscovery: what "nats micro ls" and "nats micro info" ask for finds
// the workers with their methods, and the gateways.
func TestDiscovery(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	startWorker(t, ns.URL())
	startGateway(t, ns.URL(), "gw", 0)
	nc := dialNATS(t, ns.URL())
	pings, err := Gather(context.Background(), nc, "$SRV.PING", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range pings {
		var p micro.Ping
		if json.Unmarshal(b, &p) == nil {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{GatewayService, WorkerService}) {
		t.Errorf("$SRV.PING: %v", names)
	}
	infos, err := Gather(context.Background(), nc, "$SRV.INFO."+WorkerService, nil)
	if err != nil || len(infos) != 1 {
		t.Fatalf("$SRV.INFO: %d answers, %v", len(infos), err)
	}
	var info micro.Info
	if err := json.Unmarshal(infos[0], &info); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range info.Endpoints {
		subjects = append(subjects, e.Subject)
		if e.QueueGroup != QueueGroup {
			t.Errorf("%s: queue group %q", e.Subject, e.QueueGroup)
		}
	}
	for _, want := range []string{"nexo.svc.math.add", "nexo.svc.math.div", "nexo.svc.sys.echo"} {
		if !slices.Contains(subjects, want) {
			t.Errorf("worker endpoints %v lack %s", subjects, want)
		}
	}
}

// TestGatherSlow: when the first reply is late, later ones may come further
// apart than Quiet and are still gathered; a reply after the quiet time is
// not waited for.
func TestGatherSlow(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	responder := dialNATS(t, ns.URL())
	for _, delay := range []time.Duration{300 * time.Millisecond, 300*time.Millisecond + 2*Quiet, 1500 * time.Millisecond} {
		_, err := responder.Subscribe("test.gather", func(m *nats.Msg) {
			go func() {
				time.Sleep(delay)
				_ = m.Respond([]byte(delay.String()))
			}()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := Gather(context.Background(), dialNATS(t, ns.URL()), "test.gather", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || time.Since(start) > 1200*time.Millisecond {
		t.Errorf("gathered %q in %v; want the two replies 200 ms apart, and not the one 1.2 s later", got, time.Since(start))
	}
}

// TestClusterTruncated: a gateway with more clients than it may list
// lists MaxGatewayClients of them, and the totals still count every one.
func TestClusterTruncated(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	g := startGateway(t, ns.URL(), "crowded", 0)
	n := MaxGatewayClients + 5
	for i := range n { // from two addresses: one may open at most 1000
		c := nexotest.DialFrom(t, []string{"127.0.0.1", "127.0.0.2"}[i%2], g.Native)
		c.Hello(wire.Hello{Name: "crowd"})
	}
	cl, err := g.gw.Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !cl.Truncated || len(cl.Clients) != MaxGatewayClients || cl.Totals.Clients != n {
		t.Errorf("truncated %v, %d listed, %d counted; want true, %d, %d", cl.Truncated, len(cl.Clients), cl.Totals.Clients, MaxGatewayClients, n)
	}
}

// TestRetryPace: idempotent requests no worker answers are sent again once
// per RetryAfter, not each time one of them reaches its deadline. With
// five deadlines between 1.5 s and 1.9 s and RetryAfter 1 s, a mute
// worker saw messages at 0, 1.0, 1.5, 1.6 and 1.8 s: every deadline fired
// the retry again, more load exactly when a cluster is struggling.
func TestRetryPace(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	nc := dialNATS(t, ns.URL())
	var mu sync.Mutex
	var seen []time.Duration
	start := time.Now()
	// A worker that takes every request and never answers.
	if _, err := nc.QueueSubscribe(DefaultPrefix+".svc.math.add", "mute", func(*nats.Msg) {
		mu.Lock()
		seen = append(seen, time.Since(start))
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, ns.URL(), "gw", time.Second)
	c, _ := nexotest.Hello(t, g.Native, "patient")
	var b []byte
	for id := uint32(1); id <= 5; id++ {
		b = wire.AppendRequestDeadline(b, id, 1400+100*id, "math.add", calc.AppendOperands(nil, 1, 2))
	}
	start = time.Now()
	c.Send(b)
	for range 5 {
		if f := c.Read(); errorCode(f) != wire.CodeTimeout {
			t.Fatalf("%s, want TIMEOUT", nexotest.String(f))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The requests may leave in more than one message; each is sent at
	// once, and again once after RetryAfter, before the next is due at 2 s.
	retried := 0
	for _, d := range seen {
		switch {
		case d < 300*time.Millisecond:
		case d >= 900*time.Millisecond && d < 1300*time.Millisecond:
			retried++
		default:
			t.Errorf("a message at %v; want them at once and after RetryAfter (1 s) only: %v", d, seen)
		}
	}
	if retried == 0 {
		t.Errorf("nothing was sent again after RetryAfter: %v", seen)
	}
}

// greetParams is test.greet's params: a JSON method only workers serve.
type greetParams struct {
	Name string `json:"name" jsonschema:"minLength=1"`
}

func greetMethod(name string) service.Method {
	m := service.JSON(name, func(_ context.Context, _ *service.Caller, p greetParams) (map[string]string, error) {
		return map[string]string{"greeting": "Hello, " + p.Name + "!"}, nil
	})
	m.Summary, m.Idempotent = "greets", true
	return m
}

// TestUnknownIsNotUnavailable: through a pure gateway, a method no worker
// serves is UNKNOWN_METHOD (it was UNAVAILABLE, so a typo looked like an
// outage); a JSON method only a worker serves is described by the
// gateway's sys.describe and called on the native door and /rpc; a worker
// that joins with a new method is reachable at the first request; and a
// method whose workers are all gone is UNAVAILABLE at once.
func TestUnknownIsNotUnavailable(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	startWorker(t, ns.URL(), greetMethod("test.greet"))
	g := startGateway(t, ns.URL(), "gw", 0)
	c, _ := nexotest.Hello(t, g.Native, "caller")

	start := time.Now()
	if f := roundTrip(t, c, 1, 5000, "no.such", nil); errorCode(f) != wire.CodeUnknownMethod {
		t.Errorf("a method nobody serves: %s, want UNKNOWN_METHOD", nexotest.String(f))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("UNKNOWN_METHOD took %v", d)
	}
	if f := roundTrip(t, c, 2, 5000, "test.greet", []byte(`{"name":"Ann"}`)); f.Type != wire.TypeResponse || string(f.Body) != `{"greeting":"Hello, Ann!"}` {
		t.Errorf("test.greet on the native door: %s", nexotest.String(f))
	}
	post := func(body string) string {
		resp, err := http.Post("http://"+g.Web+"/rpc", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := post(`{"jsonrpc":"2.0","method":"test.greet","params":{"name":"Ann"},"id":1}`); got != `{"jsonrpc":"2.0","result":{"greeting":"Hello, Ann!"},"id":1}`+"\n" {
		t.Errorf("test.greet on /rpc: %s", got)
	}
	if got := post(`{"jsonrpc":"2.0","method":"no.such","id":1}`); !strings.Contains(got, `"code":-32601`) {
		t.Errorf("no.such on /rpc: %s", got)
	}
	f := roundTrip(t, c, 3, 5000, "sys.describe", []byte(`["test.greet"]`))
	var d service.Described
	if f.Type != wire.TypeResponse || json.Unmarshal(f.Body, &d) != nil || d.Encoding != "json" || !strings.Contains(string(d.Params), "minLength") {
		t.Errorf("sys.describe [test.greet] on the gateway: %s", nexotest.String(f))
	}

	late := startWorker(t, ns.URL(), greetMethod("test.late"))
	// A worker says it joined; the gateway gathers the catalog at once.
	nexotest.WaitFor(t, 2*time.Second, "the gateway to know test.late", func() bool {
		for _, d := range g.Reg.Describe(true) {
			if d.Name == "test.late" {
				return true
			}
		}
		return false
	})
	if f := roundTrip(t, c, 4, 5000, "test.late", []byte(`{"name":"Bo"}`)); f.Type != wire.TypeResponse {
		t.Errorf("a method of a worker that just joined: %s", nexotest.String(f))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := late.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if f := roundTrip(t, c, 5, 5000, "test.late", []byte(`{"name":"Bo"}`)); errorCode(f) != wire.CodeUnavailable || time.Since(start) > time.Second {
		t.Errorf("a method whose workers are gone: %s after %v, want UNAVAILABLE at once", nexotest.String(f), time.Since(start))
	}
}

// TestGatewayAnswersLikeServe: a pure gateway (no service of its own) with
// two workers answers every method vector of testdata/vectors byte for
// byte as a single server does (server.TestMethodVectors), pipelined on
// one connection, and every math vector on /rpc as web.TestMethodVectorsJSON
// wants it.
func TestGatewayAnswersLikeServe(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	startWorker(t, ns.URL())
	startWorker(t, ns.URL())
	g := startGateway(t, ns.URL(), "gw", 0)
	nexotest.CheckMethodVectors(t, g.Native)
	nexotest.CheckJSONVectors(t, "/rpc", func(method, params string) (json.RawMessage, string) {
		body := `{"jsonrpc":"2.0","method":"` + method + `","params":` + params + `,"id":1}`
		resp, err := http.Post("http://"+g.Web+"/rpc", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m struct {
			Result json.RawMessage
			Error  *struct{ Data struct{ Name string } }
		}
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m.Error != nil {
			return nil, m.Error.Data.Name
		}
		return m.Result, ""
	})
}

// TestCatalogMethodsBatched: requests for a method only the cluster's
// catalog knows (a worker's own, not built into the gateway) travel
// batched like a built-in method's: 64 pipelined requests leave in far
// fewer NATS messages. They once went one message each.
func TestCatalogMethodsBatched(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	startWorker(t, ns.URL(), greetMethod("test.greet"))
	g := startGateway(t, ns.URL(), "gw", 0)
	c, _ := nexotest.Hello(t, g.Native, "pipeliner")
	if f := roundTrip(t, c, 1, 5000, "test.greet", []byte(`{"name":"Ann"}`)); f.Type != wire.TypeResponse {
		t.Fatalf("test.greet: %s", nexotest.String(f))
	}
	before := g.gw.Stats()
	var b []byte
	for i := range 64 {
		b = wire.AppendRequestDeadline(b, uint32(i+2), 5000, "test.greet", []byte(`{"name":"Ann"}`))
	}
	c.Send(b)
	for range 64 {
		if f := c.Read(); f.Type != wire.TypeResponse || string(f.Body) != `{"greeting":"Hello, Ann!"}` {
			t.Fatalf("pipelined test.greet: %s", nexotest.String(f))
		}
	}
	after := g.gw.Stats()
	sent, msgs := after.Sent-before.Sent, after.Messages-before.Messages
	if sent != 64 || msgs > 16 {
		t.Errorf("64 pipelined requests: %d forwarded in %d messages, want 64 in a few", sent, msgs)
	}
}

// TestOversizedAnswers: an answer that does not fit a NATS message is
// INTERNAL, saying so, instead of never arriving; in a batch, only the
// largest answers are, until the rest fit.
func TestOversizedAnswers(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	big := service.Method{Name: "test.big", Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
		n, _ := strconv.Atoi(string(req.Payload))
		return append(dst, bytes.Repeat([]byte("x"), n)...), nil
	}}
	startWorker(t, ns.URL(), big)
	nc := dialNATS(t, ns.URL())
	max := int(nc.MaxPayload())
	reply, err := nc.Request("nexo.svc.test.big", []byte(strconv.Itoa(max)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Header.Get(micro.ErrorCodeHeader) != "11" || !strings.Contains(reply.Header.Get(micro.ErrorHeader), "does not fit") {
		t.Errorf("one answer of max_payload bytes: headers %v, %d bytes", reply.Header, len(reply.Data))
	}
	b := appendRequestEntry(nil, time.Now().Add(time.Minute).UnixMilli(), []byte("10"))
	b = appendRequestEntry(b, time.Now().Add(time.Minute).UnixMilli(), []byte(strconv.Itoa(max*2/3)))
	b = appendRequestEntry(b, time.Now().Add(time.Minute).UnixMilli(), []byte(strconv.Itoa(max/2)))
	reply, err = nc.RequestMsg(&nats.Msg{Subject: "nexo.svc.test.big", Data: b, Header: nats.Header{BatchHeader: []string{"3"}}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var codes []wire.Code
	rest := reply.Data
	for range 3 {
		var code wire.Code
		if code, _, rest, err = nextResponseEntry(rest); err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
	}
	if codes[0] != 0 || codes[1] != wire.CodeInternal || codes[2] != 0 {
		t.Errorf("a batch of 10 B, 2/3 and 1/2 of max_payload: codes %v, want the largest alone INTERNAL", codes)
	}
}

// TestWorkerCountsErrors: a worker counts the requests it answered with
// an error, inline or answered from a goroutine after its handler
// returned. Those it answered through micro's Request after the handler
// returned were a data race (micro reads the request's error as the
// handler returns: TestTracing saw it under -race), and micro counted
// them only when the answer beat that read.
func TestWorkerCountsErrors(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	slowFail := service.Method{Name: "test.slowfail", Handler: func(context.Context, service.Request, []byte) ([]byte, error) {
		time.Sleep(20 * time.Millisecond) // answered long after micro's handler returned
		return nil, service.ErrBadPayload
	}}
	w := startWorker(t, ns.URL(), slowFail)
	g := startGateway(t, ns.URL(), "gw", 0)
	c, _ := nexotest.Hello(t, g.Native, "errors")
	const n = 5
	for i := range uint32(n) {
		if f := roundTrip(t, c, 2*i+1, 5000, "test.slowfail", nil); errorCode(f) != wire.CodeBadPayload {
			t.Fatalf("test.slowfail: %s, want BAD_PAYLOAD", nexotest.String(f))
		}
		if f := roundTrip(t, c, 2*i+2, 5000, "math.div", nexotest.Operands(1, 0)); errorCode(f) != wire.CodeDivisionByZero {
			t.Fatalf("math.div 1/0: %s, want DIVISION_BY_ZERO", nexotest.String(f))
		}
	}
	for _, e := range w.svc.Stats().Endpoints {
		var d EndpointData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		want := uint64(0)
		if strings.HasSuffix(e.Subject, ".test.slowfail") || strings.HasSuffix(e.Subject, ".math.div") {
			want = n
		}
		if d.Errors != want {
			t.Errorf("%s: %d errors counted, want %d", e.Subject, d.Errors, want)
		}
	}

	// A worker in another language (the Node worker) answers its errors
	// through micro, which counts them, and reports its requests as
	// nexo's workers do: the cluster view adds micro's count.
	nc := dialNATS(t, ns.URL())
	var asked atomic.Uint64
	other, err := micro.AddService(nc, micro.Config{Name: WorkerService, Version: "0.0.1", QueueGroup: QueueGroup,
		StatsHandler: func(*micro.Endpoint) any { return EndpointData{Requests: asked.Load()} }})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	subject := Subjects{DefaultPrefix}.Service("test.otherfail")
	if err := other.AddEndpoint("test_otherfail", micro.HandlerFunc(func(r micro.Request) {
		asked.Add(1)
		_ = r.Error(errCode(wire.CodeBadPayload), "no", nil)
	}), micro.WithEndpointSubject(subject)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := nc.Request(subject, nil, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// micro counts an error once the handler has returned, a moment after
	// the answer went out: the view catches up.
	var goWorker, otherWorker int
	defer func() {
		if t.Failed() {
			t.Logf("the last cluster view: Go worker %d errors, other worker %d", goWorker, otherWorker)
		}
	}()
	nexotest.WaitFor(t, 5*time.Second, fmt.Sprintf("the cluster view to count %d errors of the Go worker and 3 of the other", 2*n), func() bool {
		cl, err := g.gw.Cluster(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, wi := range cl.Workers {
			switch wi.ID {
			case w.Info().ID:
				goWorker = wi.Errors
			case other.Info().ID:
				otherWorker = wi.Errors
			}
		}
		return goWorker == 2*n && otherWorker == 3
	})
}

// TestWorkerServesOnceStarted: a worker serves from the moment NewWorker
// returns. The NATS client sends a worker's subscriptions from a buffer of
// its own, a moment later; NewWorker waits for the server to confirm them,
// so the server knows who serves the methods at once and a request sent
// right away finds the worker. Without that wait the server mostly did not
// know yet (CI saw a `nexo worker` that said it was ready, and a call
// right after it answered UNAVAILABLE: no responders).
func TestWorkerServesOnceStarted(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	caller := dialNATS(t, ns.ClientURL())
	for i := range 10 {
		prefix := fmt.Sprintf("start%d", i)
		subject := Subjects{prefix}.Service("math.add")
		w, err := NewWorker(dialNATS(t, ns.ClientURL()), workerRegistry(nil), WorkerOptions{Prefix: prefix, Version: "0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		known := ns.GlobalAccount().SubscriptionInterest(subject)
		_, err = caller.Request(subject, nil, 5*time.Second)
		_ = w.Stop(context.Background())
		if !known || err != nil {
			t.Fatalf("worker %d, right after NewWorker: the server knows a subscriber to %s: %v; a request: %v", i, subject, known, err)
		}
	}
}
