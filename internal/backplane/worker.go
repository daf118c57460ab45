package backplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/internal/upstream"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// WorkerOptions configure a Worker.
type WorkerOptions struct {
	Prefix   string            // subject prefix (DefaultPrefix when empty)
	Version  string            // SemVer, shown by "nats micro info"
	Metadata map[string]string // shown by "nats micro info"; "services" is a good key
	Log      *slog.Logger
	// Upstream, when set, is the health of the HTTP upstream whose
	// methods the worker serves: the cluster view shows it.
	Upstream func() upstream.Health
	// Tracer, when set, makes a request that carries a traceparent header
	// a span, with its handler's span inside. Nil is tracing off.
	Tracer trace.Tracer
}

// Worker serves a registry's methods to gateways over NATS: each method is
// an endpoint of the micro service "nexo-worker" on "<prefix>.svc.<method>"
// in the queue group "nexo", so every request goes to one worker.
//
// Inline methods run on the endpoint's subscription goroutine, one at a
// time per method; others run on a goroutine each, bounded by their
// deadline. A request whose deadline has passed when it reaches the worker
// is not run: it is answered TIMEOUT. One that NATS delivers once Stop
// waits for the running handlers is not run either: it is answered
// SHUTTING_DOWN.
type Worker struct {
	nc      *nats.Conn
	svc     micro.Service
	log     *slog.Logger
	caller  service.Caller
	ctx     context.Context // cancelled when Stop gives up waiting
	cancel  context.CancelFunc
	running sync.WaitGroup // handlers running now; Add only through start
	// mu orders each handler's running.Add before or after stopping is
	// set, so that no Add from zero can be concurrent with Stop's
	// running.Wait, which sync.WaitGroup forbids: NATS may still deliver a
	// message it holds while Stop waits.
	mu       sync.Mutex
	stopping bool // guarded by mu: Stop waits for the handlers, none may start
	expired  atomic.Uint64
	subjects Subjects
	served   map[string]*endpointCount // by method name
	tracer   trace.Tracer              // nil: tracing is off
}

// EndpointData is the Data of a worker endpoint's micro stats: micro counts
// messages, and a batch is one message of many requests; and micro counts
// only the errors answered before its handler returned, where a worker
// answers most requests from goroutines of their own.
type EndpointData struct {
	Requests uint64           `json:"requests"`
	Errors   uint64           `json:"errors"`             // requests answered with an error, each of a batch counted
	Upstream *upstream.Health `json:"upstream,omitempty"` // the upstream's, when the worker serves one
}

// endpointCount is what a worker counts of an endpoint (EndpointData).
type endpointCount struct{ requests, errors atomic.Uint64 }

// NewWorker registers the registry's methods on nc. Methods that are
// themselves served elsewhere (Async) are left out: a worker never
// forwards. When nc is connected, the worker serves once NewWorker
// returns: it waits for the NATS server to confirm its subscriptions.
func NewWorker(nc *nats.Conn, reg *service.Registry, o WorkerOptions) (*Worker, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{nc: nc, log: o.Log, tracer: o.Tracer, caller: service.Caller{Door: "nats", Remote: "nats"}, served: make(map[string]*endpointCount)}
	subjects := Subjects{o.Prefix}
	w.subjects = subjects
	for _, name := range reg.Names(true) {
		w.served[name] = new(endpointCount)
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	meta := maps.Clone(o.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	if meta[MetadataRuntime] == "" {
		meta[MetadataRuntime] = "go"
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        WorkerService,
		Version:     o.Version,
		Description: "nexo service worker",
		Metadata:    meta,
		QueueGroup:  QueueGroup,
		StatsHandler: func(e *micro.Endpoint) any {
			name, _ := strings.CutPrefix(e.Subject, subjects.Service(""))
			if n := w.served[name]; n != nil {
				d := EndpointData{Requests: n.requests.Load(), Errors: n.errors.Load()}
				if o.Upstream != nil {
					h := o.Upstream()
					d.Upstream = &h
				}
				return d
			}
			return nil
		},
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			w.log.Warn("worker subscription error", slog.String("subject", e.Subject), slog.String("err", e.Description))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("worker service: %w", err)
	}
	w.svc = svc
	n := 0
	for _, name := range reg.Names(true) {
		m := reg.Get(name)
		if m.Async != nil {
			continue
		}
		err := svc.AddEndpoint(endpointName(name), w.handler(m, w.served[name]),
			micro.WithEndpointSubject(subjects.Service(name)),
			micro.WithEndpointMetadata(endpointMetadata(m)))
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("worker endpoint %s: %w", name, err)
		}
		n++
	}
	if n == 0 {
		_ = svc.Stop()
		return nil, fmt.Errorf("worker: no method to serve")
	}
	// Gateways gather the catalog again when told a worker joined, so its
	// methods are callable at once, not at their next periodic gather.
	_ = nc.Publish(subjects.Admin(JoinedQuery), nil) // lost when NATS is down: the periodic gather finds it
	// A worker serves from the moment NewWorker returns: its subscriptions
	// have reached the NATS server (the client sends them from a buffer of
	// its own, a moment later). While NATS is not reachable they go with
	// the connection, whenever it comes.
	if nc.IsConnected() {
		if err := nc.FlushTimeout(joinedWait); errors.Is(err, nats.ErrTimeout) {
			// Cut off meanwhile, it sends them again when it reconnects.
			w.log.Warn("NATS did not confirm the worker's subscriptions in time", slog.Duration("waited", joinedWait))
		}
	}
	return w, nil
}

// joinedWait bounds how long NewWorker waits for the NATS server to
// confirm its subscriptions.
const joinedWait = 5 * time.Second

// endpointMetadata is what a worker's NATS micro INFO says of a method:
// its name, summary and whole description (service.Described in JSON),
// from which gateways build the cluster's catalog.
func endpointMetadata(m *service.Method) map[string]string {
	desc := m.Describe()
	if len(m.Desc.ServedBy) == 0 {
		desc.ServedBy = []string{ServedByGoWorker}
	}
	d, _ := json.Marshal(desc) // strings, schemas already JSON, bools: always marshals
	return map[string]string{"method": m.Name, "summary": m.Summary, MetadataDescription: string(d)}
}

// MetadataRuntime is the key of a worker's micro service metadata that
// names what it runs on: "go", "node", ...
const MetadataRuntime = "runtime"

// ServedByGoWorker is the served_by of a method a Go worker serves with
// Go code of its own.
const ServedByGoWorker = "go worker"

// MetadataDescription is the key of a method's description in its
// endpoint's metadata.
const MetadataDescription = "description"

// endpointName makes a micro endpoint name of a method name: micro allows
// only letters, digits, - and _.
func endpointName(method string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, method)
}

// handler serves one method's endpoint.
func (w *Worker) handler(m *service.Method, counts *endpointCount) micro.HandlerFunc {
	var buf []byte // answers of inline calls: the subscription delivers one message at a time
	return func(r micro.Request) {
		if !w.start() {
			counts.requests.Add(1) // answered with an error: counted as one request, as its error is
			w.respond(r, m, nil, errStopping)
			return
		}
		n := batchCount(r.Headers().Get(BatchHeader))
		if n < 0 {
			counts.requests.Add(1)
			w.respond(r, m, nil, &wire.Error{Code: wire.CodeBadPayload, Msg: "malformed request batch: Nexo-Batch must be 1 to " + strconv.Itoa(maxBatch)})
			w.running.Done()
			return
		}
		counts.requests.Add(uint64(max(n, 1)))
		if n != 0 {
			if m.Inline {
				buf = w.serveBatch(r, m, n, buf[:0])
				w.running.Done()
			} else {
				go func() {
					defer w.running.Done()
					w.serveBatch(r, m, n, nil)
				}()
			}
			return
		}
		deadline, ok := deadline(r.Headers())
		if ok && !time.Now().Before(deadline) {
			w.expired.Add(1)
			w.respond(r, m, nil, &wire.Error{Code: wire.CodeTimeout, Msg: "the deadline passed before a worker took the request"})
			w.running.Done()
			return
		}
		if w.tracer != nil {
			if h := r.Headers(); h.Get(tracing.Header) != "" {
				go func() {
					defer w.running.Done()
					w.serveTraced(r, m, h, deadline)
				}()
				return
			}
		}
		if m.Inline {
			out, err := m.Call(w.ctx, service.Request{Payload: r.Data(), Caller: &w.caller}, buf[:0])
			w.respond(r, m, out, err)
			buf = keep(out)
			w.running.Done()
			return
		}
		go func() {
			defer w.running.Done()
			out, err := w.call(w.ctx, m, r.Data(), deadline, nil)
			w.respond(r, m, out, err)
		}()
	}
}

// serveTraced serves a request whose headers carry a trace context: the
// worker's span, child of the gateway's NATS hop, and the handler's span
// inside it. An internal error is logged with the trace id.
func (w *Worker) serveTraced(r micro.Request, m *service.Method, h micro.Headers, deadline time.Time) {
	sp := tracing.StartServer(tracing.Extract(w.ctx, h), w.tracer, "nats", m.Name)
	hs := tracing.StartChild(sp.Ctx, w.tracer, "handler "+m.Name, trace.SpanKindInternal)
	out, err := w.call(hs.Ctx, m, r.Data(), deadline, nil)
	hs.Finish(err)
	sp.Finish(w.respondContext(hs.Ctx, r, m, out, err))
}

// errTooBig answers a request whose answer does not fit a NATS message,
// and those of a batch whose answers do not, the largest first, until
// they fit.
var errTooBig = &wire.Error{Code: wire.CodeInternal, Msg: "the answer does not fit a NATS message (the server's max_payload)"}

// fitBatch makes a batch's answers fit one NATS message: the largest
// results become errTooBig until they do. Without it the answer would not
// be sent, and every request of the batch would wait for its deadline.
func (w *Worker) fitBatch(m *service.Method, results [][]byte, errs []error) {
	limit := int(w.nc.MaxPayload()) - 4096 // the headers' room
	size := 0
	for i := range results {
		size += 6 + len(results[i])
		if errs[i] != nil {
			size += 64 + len(errs[i].Error())
		}
	}
	for size > limit {
		big := -1
		for i := range results {
			if errs[i] == nil && (big < 0 || len(results[i]) > len(results[big])) {
				big = i
			}
		}
		if big < 0 || len(results[big]) == 0 {
			return // errors only: they are short
		}
		w.log.Warn("an answer does not fit its batch's NATS message", slog.String("method", m.Name), slog.Int("bytes", len(results[big])))
		size -= len(results[big]) - len(errTooBig.Msg)
		results[big], errs[big] = nil, errTooBig
	}
}

// errStopping answers a message that arrives once Stop waits for the
// handlers: it was not run, which SHUTTING_DOWN says (a client sends it
// again, whatever the method).
var errStopping = &wire.Error{Code: wire.CodeShuttingDown, Msg: "the worker is stopping"}

// start counts a handler in, unless Stop has begun waiting for them.
func (w *Worker) start() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return false
	}
	w.running.Add(1)
	return true
}

// refuse makes every later start fail. Once it returns, running can only
// go down, and Stop may wait for it.
func (w *Worker) refuse() {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
}

// keep returns a buffer to reuse for the next answer, unless it grew large.
func keep(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}

// call runs a handler within a deadline (zero: DefaultTimeout); parent
// is w.ctx, or a context derived from it.
func (w *Worker) call(parent context.Context, m *service.Method, payload []byte, deadline time.Time, dst []byte) ([]byte, error) {
	req := service.Request{Payload: payload, Caller: &w.caller}
	if m.Inline {
		return m.Call(parent, req, dst)
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(service.DefaultTimeout)
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	out, err := m.Call(ctx, req, dst)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // too late: the gateway has answered TIMEOUT
	}
	return out, err
}

// serveBatch answers a batch of n requests with one message, in order.
// Inline methods run one after the other; others run concurrently.
func (w *Worker) serveBatch(r micro.Request, m *service.Method, n int, out []byte) []byte {
	type entry struct {
		deadline int64
		payload  []byte
	}
	entries := make([]entry, 0, n)
	rest := r.Data()
	for range n {
		d, p, tail, err := nextRequestEntry(rest)
		if err != nil {
			w.respond(r, m, nil, &wire.Error{Code: wire.CodeBadPayload, Msg: "malformed request batch"})
			return out
		}
		entries = append(entries, entry{d, p})
		rest = tail
	}
	if len(rest) != 0 {
		w.respond(r, m, nil, &wire.Error{Code: wire.CodeBadPayload, Msg: "malformed request batch"})
		return out
	}
	now := time.Now().UnixMilli()
	results := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, e := range entries {
		if e.deadline != 0 && e.deadline <= now {
			w.expired.Add(1)
			errs[i] = &wire.Error{Code: wire.CodeTimeout, Msg: "the deadline passed before a worker took the request"}
			continue
		}
		var dl time.Time
		if e.deadline != 0 {
			dl = time.UnixMilli(e.deadline)
		}
		if m.Inline {
			// Each answer is appended to out at once: results alias it.
			start := len(out)
			var err error
			out, err = m.Call(w.ctx, service.Request{Payload: e.payload, Caller: &w.caller}, out)
			results[i], errs[i] = out[start:len(out):len(out)], err
			continue
		}
		wg.Go(func() { results[i], errs[i] = w.call(w.ctx, m, e.payload, dl, nil) })
	}
	wg.Wait()
	w.fitBatch(m, results, errs)
	// Answers of inline calls sit in out; the batch follows them there.
	start := len(out)
	for i := range n {
		if errs[i] != nil {
			w.countErrors(m, 1)
			code, msg := w.failure(w.ctx, m, errs[i])
			out = appendResponseEntry(out, code, []byte(msg))
		} else {
			out = appendResponseEntry(out, 0, results[i])
		}
	}
	if err := w.reply(r, nats.Header{BatchHeader: {strconv.Itoa(n)}}, out[start:]); err != nil {
		w.log.Debug("cannot answer a batch", slog.String("method", m.Name), slog.Any("err", err))
	}
	return keep(out)
}

// respond sends a handler's answer, or its error as micro error headers
// carrying the protocol code.
func (w *Worker) respond(r micro.Request, m *service.Method, out []byte, err error) {
	w.respondContext(w.ctx, r, m, out, err)
}

// respondContext is respond with the context its log lines are about (a
// traced request's, so that they carry its trace id). It returns the
// error answered: err, or errTooBig for an answer too large to send.
func (w *Worker) respondContext(ctx context.Context, r micro.Request, m *service.Method, out []byte, err error) error {
	if err == nil && len(out) > int(w.nc.MaxPayload())-4096 {
		w.log.Warn("an answer does not fit a NATS message", slog.String("method", m.Name), slog.Int("bytes", len(out)))
		err = errTooBig
	}
	var serr error
	if err == nil {
		serr = w.reply(r, nil, out)
	} else {
		w.countErrors(m, 1)
		code, msg := w.failure(ctx, m, err)
		serr = w.reply(r, nats.Header{micro.ErrorHeader: {msg}, micro.ErrorCodeHeader: {errCode(code)}}, nil)
	}
	if serr != nil {
		w.log.Debug("cannot answer a request", slog.String("method", m.Name), slog.Any("err", serr))
	}
	return err
}

// reply sends an answer to r's reply subject on the worker's connection,
// not through r: an answer sent from a goroutine after the handler
// returned must not touch r, whose error micro reads as the handler
// returns (a data race). h may be nil. A request that answers itself
// (the tests deliver such requests without NATS) is answered through its
// Respond.
func (w *Worker) reply(r micro.Request, h nats.Header, data []byte) error {
	if self, ok := r.(selfAnswering); ok {
		return self.Respond(data, micro.WithHeaders(micro.Headers(h)))
	}
	if r.Reply() == "" {
		return nats.ErrMsgNoReply
	}
	return w.nc.PublishMsg(&nats.Msg{Subject: r.Reply(), Header: h, Data: data})
}

// selfAnswering is a request that is answered through its own Respond.
type selfAnswering interface {
	micro.Request
	answersItself()
}

// countErrors counts n requests of m answered with an error.
func (w *Worker) countErrors(m *service.Method, n int) {
	if c := w.served[m.Name]; c != nil {
		c.errors.Add(uint64(n))
	}
}

// failure turns a handler's error into its protocol code and message, and
// logs internal errors, whose text stays here.
func (w *Worker) failure(ctx context.Context, m *service.Method, err error) (wire.Code, string) {
	code := service.CodeOf(err)
	if code == wire.CodeInternal {
		w.log.ErrorContext(ctx, "handler failed", slog.String("method", m.Name), slog.Any("err", err))
	}
	msg := service.ErrorMessage(code, err)
	if msg == "" {
		msg = code.String()
	}
	return code, msg
}

// Expired returns how many requests arrived past their deadline and were
// not run.
func (w *Worker) Expired() uint64 { return w.expired.Load() }

// Gone tells the gateways that the methods named no longer have this
// worker (its predecessor, for an upstream's new document): they forget
// those no other worker serves, at once.
func (w *Worker) Gone(names []string) {
	b, _ := json.Marshal(Joined{Gone: names})
	_ = w.nc.Publish(w.subjects.Admin(JoinedQuery), b) // lost when NATS is down: CatalogForget forgets them later
}

// Connected reports whether the worker's NATS connection is up.
func (w *Worker) Connected() bool { return w.nc.IsConnected() }

// Served calls f with each method's requests so far (each request of a
// batch counted) and those answered with an error.
func (w *Worker) Served(f func(method string, requests, errors uint64)) {
	for name, n := range w.served {
		f(name, n.requests.Load(), n.errors.Load())
	}
}

// Info returns the worker's micro service description.
func (w *Worker) Info() micro.Info { return w.svc.Info() }

// Stop drains the worker: it stops taking requests (NATS sends new ones to
// the other workers), finishes and answers the ones it has, then drains and
// closes the connection. When ctx ends first, running handlers are
// cancelled and the connection is closed. Requests NATS still delivers once
// the worker waits for its handlers (it lost its connection, or the drain
// ended early) are answered SHUTTING_DOWN without being run.
//
// A worker that is not connected to NATS when Stop begins, or at any
// moment of the drain, however briefly, stops without a drain (see
// stopStranded): nothing it answers could reach the gateways.
func (w *Worker) Stop(ctx context.Context) error {
	if !w.nc.IsConnected() {
		return w.stopStranded(ctx)
	}
	stopErr := w.svc.Stop() // drains the endpoint subscriptions
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for w.nc.NumSubscriptions() > 0 && !w.nc.IsClosed() {
		if !w.nc.IsConnected() {
			// NATS went away under the drain, whose subscriptions would
			// wait for it to come back (and its flush ten seconds).
			return w.stopStranded(ctx)
		}
		select {
		case <-ctx.Done():
			w.refuse() // what is still delivered until Close would run cancelled
			w.cancel()
			w.nc.Close()
			return fmt.Errorf("worker drain: %w", ctx.Err())
		case <-t.C:
		}
	}
	// The drain delivered every message the subscriptions held, or the
	// connection closed under it: anything still arriving is refused.
	w.refuse()
	if !w.handlersDone(ctx) {
		w.cancel()
	}
	closed := make(chan struct{})
	w.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := w.nc.Drain(); errors.Is(err, nats.ErrConnectionReconnecting) {
		// NATS went away once the subscriptions had drained (Drain then
		// closes the connection): the handlers' answers could not be
		// sent, and nothing is left to wait for.
		w.cancel()
		return stopErr
	} else if err != nil {
		w.nc.Close()
		return err
	}
	select {
	case <-closed:
	case <-ctx.Done():
		w.nc.Close()
	}
	w.cancel()
	return stopErr
}

// stopStranded stops a worker that has no NATS connection. Nothing can be
// answered without NATS, and a drain would wait for a connection that may
// not come back: messages the subscriptions still deliver are refused,
// running handlers are cancelled, and it waits for them until ctx ends.
func (w *Worker) stopStranded(ctx context.Context) error {
	w.refuse()
	w.cancel()
	done := w.handlersDone(ctx)
	w.nc.Close()
	if !done {
		return fmt.Errorf("worker stop: handlers still running: %w", ctx.Err())
	}
	return nil
}

// handlersDone waits until no handler runs, or ctx ends; it reports
// whether every handler ended. Stop calls it once requests are refused,
// so that no handler starts meanwhile.
func (w *Worker) handlersDone(ctx context.Context) bool {
	idle := make(chan struct{})
	go func() { w.running.Wait(); close(idle) }()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}
