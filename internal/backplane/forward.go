package backplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// DefaultRetryAfter is how long a forwarded idempotent request waits for
// a worker's answer before it is sent again, to whichever worker NATS picks.
const DefaultRetryAfter = time.Second

// Forwarder sends requests to workers over NATS without blocking a
// goroutine per request.
//
// Requests of one method wait in a lane while any door is in the middle of
// a read burst (Hold, Release); the lane then goes out as one message, a
// batch when it holds more than one request (see BatchHeader). All answers arrive on one
// wildcard inbox subscription and are matched to their message by the last
// token of the reply subject.
//
// Each request is answered exactly once: with the first answer, with
// UNAVAILABLE when no worker listens or NATS is unreachable, or with TIMEOUT
// at its deadline. A message of idempotent requests still unanswered after
// RetryAfter is sent again, to whichever worker NATS picks, until the
// deadlines pass; so a worker that dies with requests in hand (kill -9)
// costs a delay, not an answer. Answers after the first are dropped.
type Forwarder struct {
	nc         *nats.Conn
	subjects   Subjects
	retryAfter time.Duration
	log        *slog.Logger
	inbox      string // "_INBOX.<nuid>.": the reply subject is inbox + token
	sub        *nats.Subscription

	// Lock order: mu, then a lane's mu; never the other way.
	mu      sync.Mutex
	dirty   []*lane            // guarded by mu: lanes holding requests
	flights map[uint64]*flight // guarded by mu: messages waiting for their answer
	next    uint64             // guarded by mu: the last token used

	tracer  trace.Tracer // nil: tracing is off
	holders atomic.Int64 // doors in the middle of a burst (Hold)
	held    atomic.Int64 // requests queued since the last flush

	sent, messages, retried, unavailable, timedOut atomic.Uint64
}

// lane gathers the requests of one method until the next flush.
type lane struct {
	subject    string
	idempotent bool
	mu         sync.Mutex
	next       *batch // guarded by mu: the requests queued, or nil
	dirty      bool   // guarded by mu: listed, or about to be, in Forwarder.dirty
}

// batch is the requests of one message: their calls and their encoding.
// Batches are recycled, so that the hot path does not grow a buffer per
// message.
type batch struct {
	calls []call
	buf   []byte // the calls as request entries
}

var batches = sync.Pool{New: func() any { return &batch{calls: make([]call, 0, 32), buf: make([]byte, 0, 1024)} }}

// recycle returns b to the pool unless it grew large.
func (b *batch) recycle() {
	if cap(b.calls) > maxBatch || cap(b.buf) > 256<<10 {
		return
	}
	clear(b.calls) // drop the callbacks
	b.calls, b.buf = b.calls[:0], b.buf[:0]
	batches.Put(b)
}

// call is one forwarded request.
type call struct {
	deadline time.Time
	done     func([]byte, error) service.Flusher // guarded by Forwarder.mu once in a flight; nil once answered
	trace    context.Context                     // the forward span's context when tracing is on (sent alone), or nil
}

// flight is one message sent and waiting for its answer.
type flight struct {
	token uint64
	lane  *lane
	msg   *nats.Msg // its Data is b.buf, kept for a retry
	b     *batch    // guarded by Forwarder.mu once registered: nil once recycled
	calls []call    // b.calls: the calls' done fields are guarded by Forwarder.mu
	timer *time.Timer
	// sending is set while a goroutine publishes msg (which reads b.buf):
	// the flight's batch is recycled only when it is neither sending nor
	// waiting.
	sending bool // guarded by Forwarder.mu
	// retryAt is when an idempotent flight may be sent again: RetryAfter
	// after it was last sent, whatever deadlines fall before (guarded by
	// Forwarder.mu).
	retryAt time.Time
}

// recycleLocked returns a flight's batch to the pool. Call it with
// Forwarder.mu held, once the flight is neither waiting nor sending.
func (fl *flight) recycleLocked() {
	if fl.b != nil {
		fl.b.recycle()
		fl.b, fl.calls, fl.msg.Data = nil, nil, nil
	}
}

// ForwarderOptions configure a Forwarder.
type ForwarderOptions struct {
	Prefix     string        // subject prefix (DefaultPrefix when empty)
	RetryAfter time.Duration // DefaultRetryAfter when 0
	Log        *slog.Logger
	// Tracer, when set, makes a span of the NATS hop of each request
	// whose trace is sampled; that request then travels alone, with its
	// traceparent header. Nil is tracing off.
	Tracer trace.Tracer
}

// NewForwarder subscribes to its reply inbox on nc.
func NewForwarder(nc *nats.Conn, o ForwarderOptions) (*Forwarder, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, err
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{
		nc:         nc,
		subjects:   Subjects{o.Prefix},
		retryAfter: o.RetryAfter,
		log:        o.Log,
		tracer:     o.Tracer,
		inbox:      nc.NewInbox() + ".",
		flights:    make(map[uint64]*flight),
	}
	sub, err := nc.Subscribe(f.inbox+"*", f.onReply)
	if err != nil {
		return nil, fmt.Errorf("NATS reply inbox: %w", err)
	}
	// The inbox takes every answer of this gateway: let it queue up to
	// the server-wide in-flight bound rather than drop answers as a slow
	// consumer.
	if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		return nil, err
	}
	f.sub = sub
	// Answers in flight are lost with the connection: say so at once
	// instead of letting every caller wait for its deadline.
	prev := nc.Opts.DisconnectedErrCB
	nc.SetDisconnectErrHandler(func(c *nats.Conn, err error) {
		if prev != nil {
			prev(c, err)
		}
		f.FailAll("lost the connection to NATS; the request may or may not have run")
	})
	return f, nil
}

// Stub turns the definition of a method served by workers into the
// gateway's registry entry: same name, listing and JSON codec, served by
// forwarding in batches. m's handler is not kept.
func (f *Forwarder) Stub(m service.Method) service.Method {
	ln := &lane{subject: f.subjects.Service(m.Name), idempotent: m.Idempotent}
	m.Handler = nil
	m.Inline = false
	m.Batcher = f
	if len(m.Desc.ServedBy) == 0 {
		m.Desc.ServedBy = []string{ServedByCluster} // until the catalog says which workers
	}
	m.Async = func(req service.Request, deadline time.Time, done func([]byte, error) service.Flusher) {
		if req.Trace != nil && f.tracer != nil {
			if ctx, done := f.traced(req.Trace, "nats "+ln.subject, ln.subject, done); ctx != nil {
				f.sendOne(ln, ctx, req.Payload, deadline, done)
				return
			}
		}
		f.enqueue(ln, req.Payload, deadline, done)
	}
	return m
}

// traced starts the span of the NATS hop for a request whose context
// holds a sampled span, and returns the hop's context and done wrapped to
// end it with the answer. Otherwise (no trace, or one the sampler left
// out) it returns a nil context and done as it is: the request is batched
// as when tracing is off.
func (f *Forwarder) traced(parent context.Context, name, subject string, done func([]byte, error) service.Flusher) (context.Context, func([]byte, error) service.Flusher) {
	if !trace.SpanContextFromContext(parent).IsSampled() {
		return nil, done
	}
	hop := tracing.StartChild(parent, f.tracer, name, trace.SpanKindClient,
		attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", subject))
	return hop.Ctx, func(p []byte, err error) service.Flusher {
		hop.Finish(err)
		return done(p, err)
	}
}

// forwardedHop names the span of the NATS hop of a method the gateway
// forwards without knowing it (Fallback).
const forwardedHop = "nats (forwarded)"

// sendOne sends one request in a message of its own; trace, when not nil,
// travels in its traceparent header.
func (f *Forwarder) sendOne(ln *lane, trace context.Context, payload []byte, deadline time.Time, done func([]byte, error) service.Flusher) {
	b := batches.Get().(*batch)
	b.calls = append(b.calls, call{deadline: deadline, done: done, trace: trace})
	b.buf = appendRequestEntry(b.buf, deadline.UnixMilli(), payload)
	f.send(ln, b)
}

// ServedByCluster is the served_by of a method the gateway forwards and
// no worker has described yet.
const ServedByCluster = "cluster"

// FallbackName is the name the fallback goes by in metrics and logs.
const FallbackName = "(forwarded)"

// Fallback forwards methods unknown to the gateway to "<prefix>.svc.<method>"
// too, so a worker can offer methods the gateway was not built with. They
// are sent at once, one per message, and are not idempotent to the
// gateway. Gateway.Fallback puts the cluster's catalog in front of it.
func (f *Forwarder) Fallback() service.Method {
	return service.Method{
		Name: FallbackName,
		Async: func(req service.Request, deadline time.Time, done func([]byte, error) service.Flusher) {
			name := string(req.Method)
			if !validSubject(name) {
				f.answerNow(done, wire.CodeUnknownMethod, "unknown method "+name)
				return
			}
			ln := &lane{subject: f.subjects.Service(name)}
			var ctx context.Context
			if req.Trace != nil && f.tracer != nil {
				ctx, done = f.traced(req.Trace, forwardedHop, ln.subject, done) // a name any caller may invent: not in the span's name
			}
			f.sendOne(ln, ctx, req.Payload, deadline, done)
		},
	}
}

// enqueue adds a request to its lane. A deadline that has passed, or a
// connection that is down, is noticed when the lane is sent.
func (f *Forwarder) enqueue(ln *lane, payload []byte, deadline time.Time, done func([]byte, error) service.Flusher) {
	f.held.Add(1)
	ln.mu.Lock()
	if ln.next == nil {
		ln.next = batches.Get().(*batch)
	}
	b := ln.next
	b.calls = append(b.calls, call{deadline: deadline, done: done})
	b.buf = appendRequestEntry(b.buf, deadline.UnixMilli(), payload)
	full, list := false, false
	if len(b.calls) >= maxBatch {
		ln.next, full = nil, true // send now, flush or not
	} else if !ln.dirty {
		ln.dirty, list = true, true
	}
	ln.mu.Unlock()
	switch {
	case full:
		f.send(ln, b)
	case list:
		f.mu.Lock()
		f.dirty = append(f.dirty, ln)
		f.mu.Unlock()
	}
}

// send turns a batch of a lane into a flight and publishes it.
func (f *Forwarder) send(ln *lane, b *batch) {
	f.mu.Lock()
	fl := f.flightLocked(ln, b)
	f.mu.Unlock()
	f.publish(fl)
}

// flushAt is how many queued requests make a Release send them although
// other doors still hold the forwarder: under a steady load bursts may
// overlap without end.
const flushAt = 256

// Hold tells the forwarder a door is in the middle of a burst: requests
// wait for its Release.
func (f *Forwarder) Hold() { f.holders.Add(1) }

// Release ends a door's burst. The last door to release sends everything
// queued, so that the bursts of many connections go out in the same
// messages; so does any door once flushAt requests are queued.
func (f *Forwarder) Release() {
	if f.holders.Add(-1) == 0 || f.held.Load() >= flushAt {
		f.Flush()
	}
}

// Flush sends every lane's requests, each lane as one message.
func (f *Forwarder) Flush() {
	f.held.Store(0)
	f.mu.Lock()
	if len(f.dirty) == 0 {
		f.mu.Unlock()
		return
	}
	var small [8]*flight
	fls := small[:0]
	f.takeDirtyLocked(func(ln *lane, b *batch) { fls = append(fls, f.flightLocked(ln, b)) })
	f.mu.Unlock()
	for _, fl := range fls {
		f.publish(fl)
	}
}

// takeDirtyLocked empties every listed lane, passing each queued batch to
// take, and clears the list. Call it with f.mu held.
func (f *Forwarder) takeDirtyLocked(take func(*lane, *batch)) {
	for _, ln := range f.dirty {
		ln.mu.Lock()
		b := ln.next
		ln.next, ln.dirty = nil, false
		ln.mu.Unlock()
		if b != nil {
			take(ln, b)
		}
	}
	clear(f.dirty)
	f.dirty = f.dirty[:0]
}

// flightLocked registers and times a new flight of a lane's batch, marked
// as sending.
func (f *Forwarder) flightLocked(ln *lane, b *batch) *flight {
	f.next++
	fl := &flight{token: f.next, lane: ln, b: b, calls: b.calls, sending: true}
	fl.msg = &nats.Msg{Subject: ln.subject, Reply: f.inbox + strconv.FormatUint(fl.token, 10)}
	if len(b.calls) == 1 {
		// One request travels in the plain format.
		fl.msg.Data = b.buf[reqEntryHeader:]
		fl.msg.Header = nats.Header{DeadlineHeader: []string{strconv.FormatInt(b.calls[0].deadline.UnixMilli(), 10)}}
		if t := b.calls[0].trace; t != nil {
			tracing.Inject(t, fl.msg.Header)
		}
	} else {
		fl.msg.Data = b.buf
		fl.msg.Header = nats.Header{BatchHeader: []string{strconv.Itoa(len(b.calls))}}
	}
	f.flights[fl.token] = fl
	now := time.Now()
	fl.retryAt = now.Add(f.retryAfter)
	fl.timer = time.AfterFunc(f.waitLocked(fl, now), func() { f.expire(fl) })
	return fl
}

// waitLocked returns how long until fl's timer must fire: at the earliest
// deadline of its unanswered calls, or at the retry for idempotent ones.
func (f *Forwarder) waitLocked(fl *flight, now time.Time) time.Duration {
	var first time.Time
	for i := range fl.calls {
		if c := &fl.calls[i]; c.done != nil && (first.IsZero() || c.deadline.Before(first)) {
			first = c.deadline
		}
	}
	d := first.Sub(now)
	if fl.lane.idempotent {
		d = min(d, fl.retryAt.Sub(now))
	}
	return max(d, 0)
}

// publish sends a flight's message; the flight is marked as sending.
func (f *Forwarder) publish(fl *flight) {
	f.sent.Add(uint64(len(fl.calls)))
	f.messages.Add(1)
	f.resend(fl)
}

// resend publishes a flight marked as sending, then unmarks it and
// recycles its batch if it was answered meanwhile.
func (f *Forwarder) resend(fl *flight) {
	if !f.nc.IsConnected() {
		f.finish(fl, func(int) (wire.Code, string, []byte) {
			return wire.CodeUnavailable, "no connection to NATS; no worker can be reached", nil
		})
	} else if err := f.nc.PublishMsg(fl.msg); err != nil {
		code, msg := wire.CodeUnavailable, "cannot reach NATS: "+err.Error()
		if errors.Is(err, nats.ErrMaxPayload) {
			code, msg = wire.CodeBadPayload, "payload larger than the NATS server's max_payload"
		}
		f.finish(fl, func(int) (wire.Code, string, []byte) { return code, msg, nil })
	}
	f.mu.Lock()
	fl.sending = false
	if f.flights[fl.token] != fl {
		fl.recycleLocked()
	}
	f.mu.Unlock()
}

// finish answers every unanswered call of a flight, if it is still
// waiting, with what answer returns for the call's index.
func (f *Forwarder) finish(fl *flight, answer func(i int) (wire.Code, string, []byte)) {
	f.mu.Lock()
	if f.flights[fl.token] != fl {
		f.mu.Unlock()
		return
	}
	delete(f.flights, fl.token)
	fl.timer.Stop()
	dones := make([]func([]byte, error) service.Flusher, len(fl.calls))
	for i := range fl.calls {
		dones[i], fl.calls[i].done = fl.calls[i].done, nil
	}
	if !fl.sending {
		fl.recycleLocked()
	}
	f.mu.Unlock()
	var small [8]service.Flusher
	fs := flushers(small[:0])
	for i, done := range dones {
		if done == nil {
			continue
		}
		code, msg, payload := answer(i)
		fs = f.deliver(fs, done, code, msg, payload)
	}
	fs.flush()
}

// deliver calls done with a payload (code 0) or a protocol error, and
// adds the Flusher it returns to fs unless it is there already.
func (f *Forwarder) deliver(fs flushers, done func([]byte, error) service.Flusher, code wire.Code, msg string, payload []byte) flushers {
	var fl service.Flusher
	switch code {
	case 0:
		fl = done(payload, nil)
	case wire.CodeUnavailable:
		f.unavailable.Add(1)
		fl = done(nil, &wire.Error{Code: code, Msg: msg})
	case wire.CodeTimeout:
		f.timedOut.Add(1)
		fl = done(nil, &wire.Error{Code: code, Msg: msg})
	default:
		fl = done(nil, &wire.Error{Code: code, Msg: msg})
	}
	if fl == nil || slices.Contains(fs, fl) {
		return fs
	}
	return append(fs, fl)
}

// flushers are the Flushers a group of answers returned.
type flushers []service.Flusher

// flush writes a group of answers: one Flush per connection.
func (fs flushers) flush() {
	for _, fl := range fs {
		fl.Flush()
	}
}

// answerNow answers a request that is never sent.
func (f *Forwarder) answerNow(done func([]byte, error) service.Flusher, code wire.Code, msg string) {
	var small [1]service.Flusher
	f.deliver(small[:0], done, code, msg, nil).flush()
}

// onReply answers the calls of the flight a message answers.
func (f *Forwarder) onReply(m *nats.Msg) {
	token, err := strconv.ParseUint(m.Subject[len(f.inbox):], 10, 64)
	if err != nil {
		return
	}
	f.mu.Lock()
	fl := f.flights[token]
	n := 0
	if fl != nil {
		n = len(fl.calls) // fl.calls goes back to the pool once the flight is answered
	}
	f.mu.Unlock()
	if fl == nil { // answered already: a retry's twin, or too late
		return
	}
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		msg := "no worker serves " + fl.method()
		f.finish(fl, func(int) (wire.Code, string, []byte) { return wire.CodeUnavailable, msg, nil })
		return
	}
	if err, ok := replyError(m.Header); ok { // the worker refused the whole message
		var we *wire.Error
		errors.As(err, &we)
		f.finish(fl, func(int) (wire.Code, string, []byte) { return we.Code, we.Msg, nil })
		return
	}
	if n == 1 && m.Header.Get(BatchHeader) == "" {
		f.finish(fl, func(int) (wire.Code, string, []byte) { return 0, "", m.Data })
		return
	}
	// A batch: decode every answer first, so that a malformed one fails
	// the whole message instead of answering some calls wrongly.
	codes := make([]wire.Code, n)
	bodies := make([][]byte, n)
	rest := m.Data
	for i := range n {
		if codes[i], bodies[i], rest, err = nextResponseEntry(rest); err != nil {
			break
		}
		if codes[i] != 0 && !codes[i].Answerable() {
			// Not a code a client may get: its words are not for the
			// client either.
			codes[i], bodies[i] = wire.CodeInternal, fmt.Appendf(nil, "a worker answered code %d", codes[i])
		}
	}
	if err != nil || len(rest) != 0 || batchCount(m.Header.Get(BatchHeader)) != n {
		f.log.Warn("malformed answer batch from a worker", slog.String("method", fl.method()))
		f.finish(fl, func(int) (wire.Code, string, []byte) {
			return wire.CodeInternal, "malformed answer from a worker", nil
		})
		return
	}
	f.finish(fl, func(i int) (wire.Code, string, []byte) {
		if codes[i] == 0 {
			return 0, "", bodies[i]
		}
		return codes[i], string(bodies[i]), nil
	})
}

// method returns the method name of a flight, from its subject.
func (fl *flight) method() string {
	s := fl.msg.Subject
	for i := 0; i+5 <= len(s); i++ {
		if s[i:i+5] == ".svc." {
			return s[i+5:]
		}
	}
	return s
}

// expire runs when a flight's timer fires: calls past their deadline get
// TIMEOUT; idempotent ones still in time are sent again.
func (f *Forwarder) expire(fl *flight) {
	now := time.Now()
	f.mu.Lock()
	if f.flights[fl.token] != fl {
		f.mu.Unlock()
		return
	}
	var late []func([]byte, error) service.Flusher
	left := 0
	for i := range fl.calls {
		c := &fl.calls[i]
		if c.done == nil {
			continue
		}
		if !now.Before(c.deadline) {
			late = append(late, c.done)
			c.done = nil
		} else {
			left++
		}
	}
	retry := false
	if left == 0 {
		delete(f.flights, fl.token)
		if !fl.sending {
			fl.recycleLocked()
		}
	} else {
		retry = fl.lane.idempotent && !fl.sending && !now.Before(fl.retryAt)
		if retry {
			fl.retryAt = now.Add(f.retryAfter)
		}
		fl.sending = fl.sending || retry
		fl.timer.Reset(f.waitLocked(fl, now))
	}
	f.mu.Unlock()
	msg := "no worker answered " + fl.method() + " in time"
	var fs flushers
	for _, done := range late {
		fs = f.deliver(fs, done, wire.CodeTimeout, msg, nil)
	}
	fs.flush()
	if retry {
		f.retried.Add(uint64(left))
		f.log.Debug("sending again requests no worker answered", slog.String("method", fl.method()), slog.Int("requests", left))
		f.resend(fl)
	}
}

// FailAll answers every request not yet answered UNAVAILABLE: NATS is
// gone, and their answers with it.
func (f *Forwarder) FailAll(why string) {
	f.mu.Lock()
	var dones []func([]byte, error) service.Flusher
	for t, fl := range f.flights {
		fl.timer.Stop()
		delete(f.flights, t)
		for i := range fl.calls {
			if c := &fl.calls[i]; c.done != nil {
				dones = append(dones, c.done)
				c.done = nil
			}
		}
		if !fl.sending {
			fl.recycleLocked()
		}
	}
	f.takeDirtyLocked(func(_ *lane, b *batch) {
		for _, c := range b.calls {
			dones = append(dones, c.done)
		}
		b.recycle()
	})
	f.mu.Unlock()
	var fs flushers
	for _, done := range dones {
		fs = f.deliver(fs, done, wire.CodeUnavailable, why, nil)
	}
	fs.flush()
}

// Waiting returns the number of requests not yet answered.
func (f *Forwarder) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, fl := range f.flights {
		for _, c := range fl.calls {
			if c.done != nil {
				n++
			}
		}
	}
	for _, ln := range f.dirty {
		ln.mu.Lock()
		if ln.next != nil {
			n += len(ln.next.calls)
		}
		ln.mu.Unlock()
	}
	return n
}

// ForwardStats are a forwarder's counters since it started.
type ForwardStats struct {
	Sent        uint64 `json:"sent"`        // requests sent (retries not counted)
	Messages    uint64 `json:"messages"`    // NATS messages they went in: Sent/Messages is the mean batch
	Retried     uint64 `json:"retried"`     // requests sent again
	Unavailable uint64 `json:"unavailable"` // answered UNAVAILABLE
	TimedOut    uint64 `json:"timed_out"`   // answered TIMEOUT
	Waiting     int    `json:"waiting"`     // not answered yet
}

// Stats returns the forwarder's counters.
func (f *Forwarder) Stats() ForwardStats {
	return ForwardStats{
		Sent: f.sent.Load(), Messages: f.messages.Load(), Retried: f.retried.Load(), Unavailable: f.unavailable.Load(),
		TimedOut: f.timedOut.Load(), Waiting: f.Waiting(),
	}
}

// Close stops taking answers; requests not yet answered get UNAVAILABLE.
// Shut the server down first, so that there are none.
func (f *Forwarder) Close() {
	_ = f.sub.Unsubscribe() // fails only when the connection is closed already
	f.FailAll("the gateway is closing")
}
