package backplane

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nexo-project/nexo/internal/natsembed"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// fakeRequest is a message as a worker endpoint's subscription hands it
// over, delivered by the test itself: a subscription goes on delivering
// what it holds when NATS goes away, and the test must choose the moment.
// It keeps the answer as the gateway would receive it.
type fakeRequest struct {
	data    []byte
	headers micro.Headers

	mu      sync.Mutex
	answers []*nats.Msg // guarded by mu
}

func (r *fakeRequest) Respond(data []byte, opts ...micro.RespondOpt) error {
	m := nats.NewMsg("reply")
	m.Data = append([]byte(nil), data...) // as publishing does: the worker reuses data
	for _, o := range opts {
		o(m)
	}
	r.mu.Lock()
	r.answers = append(r.answers, m)
	r.mu.Unlock()
	return nil
}

func (r *fakeRequest) RespondJSON(any, ...micro.RespondOpt) error {
	return errors.New("a worker answers in binary")
}

// Error sets the headers as micro's own Request.Error does.
func (r *fakeRequest) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	return r.Respond(data, append(opts, func(m *nats.Msg) {
		m.Header.Set(micro.ErrorHeader, description)
		m.Header.Set(micro.ErrorCodeHeader, code)
	})...)
}

func (r *fakeRequest) Data() []byte           { return r.data }
func (r *fakeRequest) Headers() micro.Headers { return r.headers }
func (r *fakeRequest) Subject() string        { return "nexo.svc.test" }
func (r *fakeRequest) Reply() string          { return "reply" }
func (r *fakeRequest) answersItself()         {}

// single is one plain request.
func single(payload string) *fakeRequest {
	return &fakeRequest{data: []byte(payload), headers: micro.Headers{}}
}

// batchOf is a batch of requests, as a gateway sends them.
func batchOf(payloads ...string) *fakeRequest {
	var b []byte
	for _, p := range payloads {
		b = appendRequestEntry(b, 0, []byte(p))
	}
	return &fakeRequest{data: b, headers: micro.Headers{BatchHeader: []string{strconv.Itoa(len(payloads))}}}
}

// answer returns the request's one answer as the gateway decodes it: its
// error code (0 for success) and its data.
func (r *fakeRequest) answer(t *testing.T) (wire.Code, []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.answers) != 1 {
		t.Fatalf("%d answers, want 1", len(r.answers))
	}
	m := r.answers[0]
	if err, ok := replyError(m.Header); ok {
		var we *wire.Error
		errors.As(err, &we)
		return we.Code, m.Data
	}
	return 0, m.Data
}

// codeName names an answer's code for failure messages.
func codeName(c wire.Code) string {
	if c == 0 {
		return "success"
	}
	return c.String()
}

// strandedWorkers starts n workers serving methods, each on its own NATS
// connection, then stops the NATS server and waits until every worker has
// lost its connection: Stop then takes its way for a worker without NATS,
// while the subscriptions may still hand the worker messages they hold.
func strandedWorkers(t *testing.T, n int, methods ...service.Method) []*Worker {
	t.Helper()
	reg := service.NewRegistry()
	if err := reg.Register(methods...); err != nil {
		t.Fatal(err)
	}
	ns := startNATS(t, "127.0.0.1:0")
	workers := make([]*Worker, n)
	lost := make([]chan struct{}, n)
	for i := range workers {
		nc := dialNATS(t, ns.URL())
		w, err := NewWorker(nc, reg, WorkerOptions{Version: "0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		lost[i] = make(chan struct{})
		nc.SetDisconnectErrHandler(func(*nats.Conn, error) { once.Do(func() { close(lost[i]) }) })
		workers[i] = w
	}
	ns.Stop()
	for i := range lost {
		select {
		case <-lost[i]:
		case <-time.After(10 * time.Second):
			t.Fatal("a worker did not notice NATS going away")
		}
		if workers[i].nc.IsConnected() {
			t.Fatal("a worker is still connected after NATS stopped")
		}
	}
	return workers
}

// TestStopRefusesLateRequests: a worker that lost NATS is stopped while a
// handler runs. Requests its subscriptions deliver while Stop waits for
// that handler, or after Stop returned, are not run: they are answered
// SHUTTING_DOWN, whole for a batch. The running handler is waited for.
// Before the fix such a request was counted into the WaitGroup
// Stop was waiting on (sync.WaitGroup forbids an Add from zero concurrent
// with Wait) and ran, with the worker's context already cancelled.
//
// synctest makes it deterministic: synctest.Wait returns once the slow
// handler and Stop are blocked, so the late requests arrive exactly while
// Stop waits.
func TestStopRefusesLateRequests(t *testing.T) {
	var (
		release chan struct{} // made in the bubble, so that waiting on it is durable
		ran     atomic.Int64  // runs of test.count
	)
	slow := service.Method{Name: "test.slow", Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
		<-release // busy, not watching its context
		return append(dst, "done"...), nil
	}}
	count := service.Method{Name: "test.count", Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
		ran.Add(1)
		return append(dst, req.Payload...), nil
	}}
	countInline := count
	countInline.Name, countInline.Inline = "test.countinline", true
	w := strandedWorkers(t, 1, slow, count, countInline)[0]
	deliver := map[string]micro.HandlerFunc{} // by method: its endpoint's handler
	for _, m := range []service.Method{slow, count, countInline} {
		deliver[m.Name] = w.handler(&m, new(endpointCount))
	}

	synctest.Test(t, func(t *testing.T) {
		release = make(chan struct{})
		inFlight := single("x")
		deliver["test.slow"](inFlight) // runs on its own goroutine
		synctest.Wait()
		stopped := make(chan error, 1)
		go func() { stopped <- w.Stop(context.Background()) }()
		synctest.Wait() // Stop waits for test.slow

		late := []struct {
			what, method string
			req          *fakeRequest
		}{
			{"a request", "test.count", single("late")},
			{"an inline request", "test.countinline", single("late inline")},
			{"a batch", "test.countinline", batchOf("late", "batch")},
		}
		for _, l := range late {
			deliver[l.method](l.req)
		}
		synctest.Wait() // what was started has run
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a handler was running", err)
		default:
		}
		for _, l := range late {
			if code, data := l.req.answer(t); code != wire.CodeShuttingDown {
				t.Errorf("%s delivered while Stop waits: answered %s %q, want SHUTTING_DOWN", l.what, codeName(code), data)
			}
		}

		close(release)
		if err := <-stopped; err != nil {
			t.Errorf("Stop: %v", err)
		}
		// Answered before Stop returned; with NATS gone, Stop cancelled
		// its context, so the answer is that error, and goes nowhere.
		inFlight.answer(t)

		after := single("after")
		deliver["test.count"](after)
		synctest.Wait()
		if code, data := after.answer(t); code != wire.CodeShuttingDown {
			t.Errorf("request delivered after Stop: answered %s %q, want SHUTTING_DOWN", codeName(code), data)
		}
		if n := ran.Load(); n != 0 {
			t.Errorf("the late requests ran %d times, want 0", n)
		}
	})
}

// TestStopRacesDelivery: subscriptions of workers that lost NATS deliver
// messages on their own goroutines while Stop runs, nothing else ordering
// the two. It checks what sync.WaitGroup demands, no Add from zero
// concurrent with Wait: before the fix the race detector reported the
// handlers' running.Add against Stop's running.Wait, and WaitGroup itself
// panicked ("reused before previous Wait has returned", "Add called
// concurrently with Wait"), with or without -race. It also checks that
// every request is answered once, run or refused with SHUTTING_DOWN, and
// that none starts running once Stop has returned.
func TestStopRacesDelivery(t *testing.T) {
	const rounds, deliverers = 32, 4
	var (
		stopped [rounds]atomic.Bool // Stop of the round's worker has returned
		late    atomic.Int64        // runs that started after that
	)
	// Inline, so that it runs on the delivering goroutine and touches
	// nothing Stop touches (not even the worker's context): the race
	// detector sees only what orders the handler and Stop.
	work := service.Method{Name: "test.work", Inline: true, Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
		round, err := strconv.Atoi(string(req.Payload))
		if err != nil {
			return dst, err
		}
		if stopped[round].Load() {
			late.Add(1)
		}
		for range 100 { // long enough that Stop often finds handlers running
			dst = append(dst[:0], req.Payload...)
		}
		return dst, nil
	}}
	workers := strandedWorkers(t, rounds, work)
	var refused, served int
	for round, w := range workers {
		payload := strconv.Itoa(round)
		reqs := make([][]*fakeRequest, deliverers)
		var wg, going sync.WaitGroup
		going.Add(deliverers)
		for d := range reqs {
			// Each deliverer is one endpoint's subscription: an inline
			// handler is called by one goroutine at a time.
			h := w.handler(&work, new(endpointCount))
			wg.Go(func() {
				r := single(payload)
				h(r)
				reqs[d] = append(reqs[d], r)
				going.Done() // orders this first delivery before Stop, and nothing after
				// Until Stop has returned, and once more after.
				for more := true; more; {
					more = !stopped[round].Load()
					r := single(payload)
					h(r)
					reqs[d] = append(reqs[d], r)
				}
			})
		}
		going.Wait()
		if err := w.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
		stopped[round].Store(true)
		wg.Wait()
		for _, rs := range reqs {
			for _, r := range rs {
				switch code, data := r.answer(t); {
				case code == wire.CodeShuttingDown:
					refused++
				case code == 0 && string(data) == payload:
					served++
				default:
					t.Fatalf("answered %s %q, want %q or SHUTTING_DOWN", codeName(code), data, payload)
				}
			}
		}
	}
	if n := late.Load(); n != 0 {
		t.Errorf("%d requests started running after Stop had returned", n)
	}
	t.Logf("%d requests run, %d refused", served, refused)
}

// natsBehind returns a proxy to a new NATS server, for a worker that the
// test cuts off from NATS.
func natsBehind(t *testing.T) (ns *natsembed.Server, proxy *nexotest.Proxy) {
	t.Helper()
	ns = startNATS(t, "127.0.0.1:0")
	return ns, nexotest.NewProxy(t, strings.TrimPrefix(ns.URL(), "nats://"))
}

// stopAsNATSGoes stops w (with 30 s to drain, as `nexo worker` has) while
// NATS goes away under the drain: the proxy stalls, so that the drain's
// UNSUB and PING go nowhere and the worker still counts itself connected;
// Stop; and once the drain has begun, the proxy is cut. Stop's result
// arrives on the channel.
func stopAsNATSGoes(t *testing.T, w *Worker, proxy *nexotest.Proxy) <-chan error {
	t.Helper()
	proxy.Stall()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		stopped <- w.Stop(ctx)
	}()
	nexotest.WaitFor(t, 10*time.Second, "Stop to begin the drain", w.svc.Stopped)
	proxy.Cut()
	return stopped
}

// TestStopWhileNATSGoesAway: NATS goes away after Stop began to drain,
// while the worker still counted itself connected (SIGTERM right after
// NATS stopped), and while a subscription still holds a message, so that
// the drain cannot end by itself. Stop then takes the way of a worker
// without NATS: what is delivered from then on is refused without being
// run, the running handler is waited for, and Stop returns nil. Before
// the fix the drain waited for NATS to come back until its context ended
// (30 s for `nexo worker`): a worker did not stop on SIGTERM, and the
// message it held ran, its answer going nowhere.
func TestStopWhileNATSGoesAway(t *testing.T) {
	ns, proxy := natsBehind(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var ran atomic.Int64
	hold := service.Method{Name: "test.hold", Inline: true, Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) {
		if ran.Add(1) == 1 {
			close(entered)
		}
		<-release // inline, so the subscription delivers nothing else meanwhile
		return append(dst, "done"...), nil
	}}
	w := startWorker(t, "nats://"+proxy.Addr, hold)
	free := sync.OnceFunc(func() { close(release) })
	defer free()
	// Two requests: the first holds the handler, the second waits in the
	// subscription.
	caller := dialNATS(t, ns.URL())
	subject := Subjects{DefaultPrefix}.Service("test.hold")
	for range 2 {
		if err := caller.PublishRequest(subject, caller.NewRespInbox(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	nexotest.WaitFor(t, 10*time.Second, "the worker to receive both requests", func() bool { return w.nc.Stats().InMsgs >= 2 })
	<-entered

	stopped := stopAsNATSGoes(t, w, proxy)
	nexotest.WaitFor(t, 10*time.Second, "the worker to refuse requests once NATS went away under its drain", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.stopping
	})
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a handler was running", err)
	default:
	}
	free()
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v, want nil: the worker stopped, NATS was away", err)
	}
	if !w.nc.IsClosed() {
		t.Error("the NATS connection is not closed after Stop")
	}
	if n := ran.Load(); n != 1 {
		t.Errorf("test.hold ran %d times, want 1: the request delivered after NATS went away must not run", n)
	}
}

// TestStopWhileNATSGoesAwayIdle: as TestStopWhileNATSGoesAway, with no
// request in hand, so that the subscriptions drain as soon as NATS is
// gone and the connection's own drain is what finds it gone (or the
// drain loop, whichever sees it first). Stop returns nil. Before the fix
// it returned "nats: connection reconnecting", and `nexo worker` exited 1.
func TestStopWhileNATSGoesAwayIdle(t *testing.T) {
	_, proxy := natsBehind(t)
	w := startWorker(t, "nats://"+proxy.Addr)
	stopped := stopAsNATSGoes(t, w, proxy)
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v, want nil: the worker stopped, NATS was away", err)
	}
	if !w.nc.IsClosed() {
		t.Error("the NATS connection is not closed after Stop")
	}
}

// TestStopStrandedWithinContext: a worker without NATS whose handler does
// not return is stopped with a context that ends; Stop returns then, with
// the context's error, instead of waiting for the handler without bound
// (so a drain timeout holds however NATS fares).
func TestStopStrandedWithinContext(t *testing.T) {
	var release chan struct{} // made in the bubble, so that waiting on it is durable
	stuck := service.Method{Name: "test.stuck", Handler: func(context.Context, service.Request, []byte) ([]byte, error) {
		<-release // ignores its context
		return nil, nil
	}}
	w := strandedWorkers(t, 1, stuck)[0]
	deliver := w.handler(&stuck, new(endpointCount))
	synctest.Test(t, func(t *testing.T) {
		release = make(chan struct{})
		defer close(release)
		deliver(single("x"))
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stop: %v, want the context's deadline", err)
		}
		if !w.nc.IsClosed() {
			t.Error("the NATS connection is not closed after Stop")
		}
	})
}
