package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nexo-project/nexo/internal/tracing"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The request path, the same for every door whose reader hands the core
// decoded requests (native, legacy): admission, dispatch to the registry,
// and the one reply path. A door whose own engine answers whole messages
// (the WebSocket door's JSON-RPC) uses the same admission and output
// through Session.

// errAnswerTooLarge replaces an answer longer than the max frame, which
// the client was told it need not accept: it gets INTERNAL, and the log
// says why.
var errAnswerTooLarge = errors.New("answer longer than the max frame")

// request is one request a door decoded. Its slices alias the door's read
// buffer: they are valid until the reader reads again.
type request struct {
	ref     uint32          // the door's reference for the answer (native: the request id)
	m       *service.Method // nil: no such method
	name    []byte          // the method as the client named it
	payload []byte
	timeout time.Duration // from the request's deadline; 0: the server's RequestTimeout
	expired bool          // the deadline had passed on arrival
	trace   []byte        // the caller's trace context (native FlagTrace), or nil
}

// input notes bytes of input at the start of a frame: the first of a
// burst takes the reader's in-flight unit, which keeps a drain from
// finishing while the reader still has requests at hand.
func (s *session) input(n int) {
	if !s.rd.busy {
		s.rd.busy = true
		s.acquire()
		s.reading.Store(true)
	}
	s.rd.in += uint64(n)
}

// burstDone ends a burst of input, or a part of a long one: it counts the
// burst's bytes and requests, lets forwarded requests go, counts the last
// inline request, and writes the answers. last says the burst is over,
// and the reader gives back its in-flight unit.
func (s *session) burstDone(last bool) {
	s.countBurst()
	if last {
		s.rd.served = false
	}
	s.flushForwarded()
	now := time.Now() // wall clock too: lastSeen is compared with it
	s.settle(monoOf(now))
	s.lastSeen.Store(now.UnixNano())
	s.commitPending()
	if last {
		s.reading.Store(false)
		s.sayGoodbye() // a drain that began during the burst: after its answers
	}
	if s.rd.resume != nil {
		s.rd.blocked = !s.out.FlushNow(s.rd.resume)
	} else {
		_ = s.out.Flush() // a failed writer has closed the session already
	}
	if last && s.rd.busy {
		s.rd.busy = false
		s.release()
	}
}

// countBurst adds the burst's bytes and requests to the session's counters.
func (s *session) countBurst() {
	s.bytesIn.Add(s.rd.in)
	s.requests.Add(s.rd.reqs)
	s.rd.in, s.rd.reqs = 0, 0
}

// frameDone ends the handling of one frame: the burst is over when more
// is false (no whole frame is left buffered); a long burst writes what it
// has once its answers pass flushAt. It reports whether the burst ended.
func (s *session) frameDone(more bool) bool {
	if !more {
		s.burstDone(true)
		return true
	}
	if len(s.rd.pend) >= flushAt {
		s.burstDone(false)
	}
	return false
}

// readEnded ends the reader's part when it stops for good, with the error
// that stopped it: the answers it holds are handed to the writer, a
// protocol error gets the door's last words after them, and what the
// reader holds is counted and given back. It returns the error for end.
func (s *session) readEnded(err error) error {
	s.commitPending()
	s.reading.Store(false)
	s.sayGoodbye()
	s.flushForwarded() // before a linger: the forwarder must not hold them
	err = s.readFailed(err)
	s.countBurst()
	s.settle(monoNow())
	if s.rd.busy {
		s.rd.busy = false
		s.release()
	}
	return err
}

// commitPending hands the answers of inline requests to the writer. They
// were encoded into a buffer only the reader touches, so no lock is held
// while handlers run; here it is taken once for the whole burst.
func (s *session) commitPending() {
	if len(s.rd.pend) == 0 {
		return
	}
	_ = s.out.Commit(append(s.out.Begin(), s.rd.pend...)) // a failed writer closes the session
	if cap(s.rd.pend) > flushAt {
		s.rd.pend = nil
	} else {
		s.rd.pend = s.rd.pend[:0]
	}
}

// admit is the admission of one request, the same on every door: while
// the session drains, SHUTTING_DOWN; for work that runs beside the reader
// (async), BUSY past the connection's in-flight limit, its bytes in flight
// (size is what the request holds while it runs: a copy of its payload or
// message), or the server's in-flight limit. It returns 0 when the request
// may run; async work then holds its share of each count until done.
func (s *session) admit(async bool, size int) (wire.Code, string) {
	if s.draining.Load() {
		return wire.CodeShuttingDown, "connection is closing; no new requests"
	}
	if !async {
		return 0, ""
	}
	// The reader holds one unit of the connection's count while it works
	// through a burst; the rest are requests running now.
	if s.inflight.Load() > int64(s.srv.cfg.MaxInFlight) {
		return wire.CodeBusy, "too many requests in flight on this connection"
	}
	// One request is always let through, whatever its size (a max frame
	// at most); more wait for the bytes of those in flight to go.
	if b := s.inflightBytes.Add(int64(size)); b > int64(s.srv.cfg.MaxInFlightBytes) && b != int64(size) {
		s.inflightBytes.Add(-int64(size))
		return wire.CodeBusy, "too many bytes in flight on this connection"
	}
	if s.srv.async.Add(1) > int64(s.srv.cfg.MaxInFlightTotal) {
		s.srv.async.Add(-1)
		s.inflightBytes.Add(-int64(size))
		return wire.CodeBusy, "too many requests in flight on this server"
	}
	if s.loopWork != nil {
		s.loopWork.Add(1)
	}
	s.acquire()
	return 0, ""
}

// done gives back the in-flight units admit(true, size) took; its bytes
// go back with releaseBytes, as soon as the request no longer holds them.
func (s *session) done() {
	s.srv.async.Add(-1)
	if s.loopWork != nil {
		s.loopWork.Add(-1)
	}
	s.release()
}

// releaseBytes gives back the bytes admit(true, size) took.
func (s *session) releaseBytes(size int) { s.inflightBytes.Add(-int64(size)) }

// request serves one decoded request: inline methods at once on the
// reader, the others on a goroutine of their own (or, for a door whose
// answers keep the order of requests, on the reader too). With tracing on
// it is a span, which its answer ends; when a watcher of the monitor
// stream wants it, a tap, which its answer completes.
func (s *session) request(r request) {
	m := r.m
	tracer, watchers := s.srv.cfg.Tracer, s.srv.hub.watchers.Load()
	var start mono
	if p := &s.rd.unsettled; p.st != nil && m != nil && m == s.rd.lastMethod && m.Inline && !r.expired &&
		tracer == nil && watchers == nil {
		// Another inline request of the method the pending ones called,
		// untraced and unwatched (a pipelined burst): no clock reading; the
		// row is timed as a whole, from its first request to the next
		// reading (settle).
		start = p.start
	} else {
		start = monoNow()
		s.settle(start) // the previous inline requests ended here
	}
	s.rd.reqs++
	s.rd.served = true
	var sp *tracing.Span // nil: tracing is off
	if tracer != nil {
		sp = tracing.StartServer(tracing.FromBinary(s.context(), r.trace), tracer, s.door.name, string(r.name))
	}
	var tp *tap // nil: no watcher wants this request
	if watchers != nil {
		tp = s.newTap(*watchers, r)
	}
	if code, msg := s.admit(false, 0); code != 0 {
		if p := &s.rd.unsettled; p.st != nil && start == p.start {
			// Refused in the middle of a row: timed on its own, not
			// from the row's first request.
			start = monoNow()
			s.settle(start)
		}
		s.refuse(r.ref, m, code, msg, start, sp, tp)
		return
	}
	switch {
	case m == nil:
		s.refuse(r.ref, nil, wire.CodeUnknownMethod, "unknown method "+string(r.name), start, sp, tp)
		return
	case r.expired:
		s.refuse(r.ref, m, wire.CodeTimeout, "deadline of 0 ms passed on arrival", start, sp, tp)
		return
	}
	if m.Inline || s.codec.Ordered() {
		s.runHere(r, m, start, sp, tp)
		return
	}
	size := len(r.payload)
	if code, msg := s.admit(true, size); code != 0 {
		s.refuse(r.ref, m, code, msg, start, sp, tp)
		return
	}
	// The request is counted before it runs beside the reader, so that
	// a handler reading the client list sees it (inline requests are
	// counted once per burst, which costs less). And the answers the
	// reader holds go to the writer first: an answer from beside the
	// reader must not overtake those of requests read before it.
	s.requests.Add(s.rd.reqs)
	s.rd.reqs = 0
	s.commitPending()
	timeout := s.srv.cfg.RequestTimeout
	if r.timeout > 0 {
		timeout = r.timeout
	}
	if m.Async != nil {
		// Served elsewhere: the answer comes back on another goroutine, so
		// the connection stays pipelined and nothing waits here.
		ref := r.ref
		if m.Batcher != nil && m.Batcher != s.rd.batcher {
			s.flushForwarded()
			s.rd.batcher = m.Batcher
			s.rd.batcher.Hold()
		}
		// The deadline may travel to another machine as wall-clock time:
		// take it from the wall clock, not from monoNow.
		m.Async(service.Request{Method: r.name, Payload: r.payload, Caller: &s.caller, Trace: sp.Context()}, time.Now().Add(timeout),
			func(resp []byte, err error) service.Flusher {
				s.answer(ref, m, resp, err, start, false, size, sp, tp)
				return s
			})
		return
	}
	go s.runAsync(m, r.ref, append([]byte(nil), r.payload...), start, start.add(timeout), sp, tp)
}

// runHere serves a request on the reader and appends its answer to the
// burst's pending output. An inline method runs as it is; another one (a
// door whose answers keep their order) gets the request timeout.
func (s *session) runHere(r request, m *service.Method, start mono, sp *tracing.Span, tp *tap) {
	ctx := sp.ContextOr(s.context())
	if !m.Inline {
		timeout := s.srv.cfg.RequestTimeout
		if r.timeout > 0 {
			timeout = r.timeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	resp, err := m.Call(ctx, service.Request{Method: r.name, Payload: r.payload, Caller: &s.caller}, s.rd.scratch[:0])
	var code wire.Code
	n := len(s.rd.pend)
	s.rd.pend, code, err = s.appendAnswer(s.rd.pend, r.ref, m, resp, err)
	s.logHandlerError(sp, m, code, err)
	if sp != nil { // Finish is not inlined: no call at all when tracing is off
		sp.Finish(err)
	}
	if tp != nil {
		tp.answered(m, resp, code, errorText(code, err), s.rd.pend[n:])
	}
	if cap(resp) <= flushAt {
		s.rd.scratch = resp[:0]
	}
	if m.Inline {
		// Counted when the next clock reading is taken (the next request
		// of another method, or the end of the burst): one reading per row
		// of requests of one method, not two per request.
		st := s.statFor(m)
		switch p := &s.rd.unsettled; {
		case p.st == nil:
			*p = pendingObs{st: st, code: code, start: start, n: 1}
		case p.st == st && p.code == code:
			p.n++
		default:
			// The row goes on with another code: the time since its first
			// request is shared by all, this one included, which begins a
			// row of its own.
			now := monoNow()
			d := s.settleAt(now, 1)
			*p = pendingObs{st: st, code: code, start: now - d, n: 1}
		}
	} else {
		s.srv.metrics.observe(s.shard(), m, code, start.since())
	}
}

// appendAnswer is the one way an answer is written, on every door: the
// result in the door's format, or the error that its code and message
// say. An answer over the max frame becomes INTERNAL. It returns the
// result code (0 for success) and the error answered, which the caller
// logs (logHandlerError) once it holds no lock.
func (s *session) appendAnswer(b []byte, ref uint32, m *service.Method, resp []byte, err error) ([]byte, wire.Code, error) {
	if err == nil && len(resp) > s.srv.maxPayload {
		err = fmt.Errorf("%w: %d bytes", errAnswerTooLarge, len(resp))
	}
	if err == nil {
		n := len(b)
		out, ferr := s.codec.AppendResult(b, ref, m, resp)
		if ferr == nil {
			return out, 0, nil
		}
		b, err = out[:n], ferr
	}
	code := service.CodeOf(err)
	s.errors.Add(1)
	return s.codec.AppendError(b, ref, code, service.ErrorMessage(code, err)), code, err
}

// replyError queues a request-level error and counts it against the
// method (nil when unknown); the connection stays open.
func (s *session) replyError(ref uint32, m *service.Method, code wire.Code, msg string, start mono) {
	s.errors.Add(1)
	s.rd.pend = s.codec.AppendError(s.rd.pend, ref, code, msg)
	s.srv.metrics.observe(s.shard(), m, code, start.since())
}

// refuse answers a request with an error without running it, and ends its
// span (nil: tracing is off) and its tap (nil: nobody watches it).
func (s *session) refuse(ref uint32, m *service.Method, code wire.Code, msg string, start mono, sp *tracing.Span, tp *tap) {
	n := len(s.rd.pend)
	s.replyError(ref, m, code, msg, start)
	sp.End(code, msg)
	if tp != nil {
		tp.answered(m, nil, code, msg, s.rd.pend[n:])
	}
}

// runAsync serves one request on its own goroutine and writes the answer.
func (s *session) runAsync(m *service.Method, ref uint32, payload []byte, start mono, deadline time.Time, sp *tracing.Span, tp *tap) {
	ctx, cancel := context.WithDeadline(sp.ContextOr(s.context()), deadline)
	resp, err := m.Call(ctx, service.Request{Payload: payload, Caller: &s.caller}, nil)
	if err == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = ctx.Err() // finished too late: the client has given up
	}
	// A session that ends (a hard shutdown) cancels ctx too: the call ran,
	// so its result goes out if the connection still takes it, never an
	// INTERNAL for a call that succeeded.
	cancel()
	s.answer(ref, m, resp, err, start, true, len(payload), sp, tp)
}

// answer writes the result of a request that was not served on the reader
// and gives back its in-flight share (size bytes). write says whether to
// write from the calling goroutine; otherwise the answer waits for Flush,
// so that answers delivered together by a forwarder share one write. sp,
// the request's span when tracing is on, ends with the answer, and so
// does tp, its tap when a watcher wants it.
func (s *session) answer(ref uint32, m *service.Method, resp []byte, err error, start mono, write bool, size int, sp *tracing.Span, tp *tap) {
	// The payload is no longer held: its bytes go back before the answer
	// is written, so that a client that has read it finds them free.
	s.releaseBytes(size)
	defer s.done()
	b := s.out.Begin()
	n := len(b)
	b, code, err := s.appendAnswer(b, ref, m, resp, err)
	if tp != nil {
		// Copies the answer's bytes while the writer is locked, before it
		// may take them; the watchers' buffers never block.
		tp.answered(m, resp, code, errorText(code, err), b[n:])
	}
	if s.out.Commit(b) == nil && write {
		_ = s.out.Flush() // failures close the session
	}
	s.logHandlerError(sp, m, code, err)
	if sp != nil {
		sp.Finish(err)
	}
	s.srv.metrics.observe(s.shard(), m, code, start.since())
}

// Flush writes the answers a forwarder delivered, from a goroutine of the
// writer: a forwarder's goroutine must not block on a slow client.
func (s *session) Flush() { s.out.FlushAsync() }

// pendingObs is an inline request answered but not yet counted: its
// duration ends at the next clock reading of the reader.
type pendingObs struct {
	st    *methodStat // nil: nothing pending
	code  wire.Code
	start mono
	n     int // inline requests in a row of this method and code since start
}

// settle counts the pending inline requests, if any, as ending at now,
// each taking an equal part of the time since the first began.
func (s *session) settle(now mono) { s.settleAt(now, 0) }

// settleAt is settle with the time shared by extra requests more, which
// are not counted here; it returns the part of each.
func (s *session) settleAt(now mono, extra int) mono {
	p := s.rd.unsettled
	if p.st == nil {
		return 0
	}
	n := max(p.n, 1)
	d := (now - p.start) / mono(n+extra)
	s.srv.metrics.recordN(s.shard(), p.st, p.code, time.Duration(d), n)
	s.rd.unsettled.st = nil
	return d
}

// statFor returns a method's counters, remembering the last method asked:
// connections mostly call the same method again and again.
func (s *session) statFor(m *service.Method) *methodStat {
	if m != s.rd.lastMethod || s.rd.lastStat == nil {
		s.rd.lastMethod, s.rd.lastStat = m, s.srv.metrics.statOf(m)
	}
	return s.rd.lastStat
}

// flushForwarded releases the batcher this burst held, so that it can send
// the requests it holds back.
func (s *session) flushForwarded() {
	if s.rd.batcher != nil {
		s.rd.batcher.Release()
		s.rd.batcher = nil
	}
}
