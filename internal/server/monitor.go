package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The monitor stream (sys.monitor): admins watch the requests and answers
// passing through the server, decoded, in the spirit of Redis's MONITOR.
//
// It costs nothing while nobody watches: the request path loads one
// pointer (hub.watchers), nil then, and does nothing more. While someone
// watches, a request a watcher wants is copied, each part capped (its
// method's name, its payload, its error's message and, when asked, its
// frames), into a record that its answer completes and offers to the
// watchers' buffers without ever waiting: a record holds about 10 KiB at
// most, whatever the client sent. A watcher's goroutine encodes the
// records as events and queues them on its connection no faster than the
// connection takes them; meanwhile its buffer fills, and a full buffer
// drops records, counts them, and has the watcher told. A watcher whose
// buffer is full costs the request path a count, nothing more, on every
// door.

// TopicMonitor is the topic of the monitor stream's events: one
// status.MonitorEvent per request, or a notice of lost events. It is
// not one of Topics: only sys.monitor starts it.
const TopicMonitor = "monitor"

// Bounds of the monitor stream.
const (
	// monitorBuffer is how many records a watcher holds before it drops
	// them.
	monitorBuffer = 1024
	// monitorShown is the most bytes of params or result an event shows
	// as JSON.
	monitorShown = 4 << 10
	// monitorClip is the most bytes of a payload an event shows in base64
	// when it shows no JSON, of each frame, and of an error's message.
	monitorClip = 512
	// monitorMethod is the most bytes of a method's name an event shows.
	monitorMethod = 255
	// monitorBacklog bounds the output waiting unwritten on a watcher's
	// connection: its goroutine queues an event only when the event, in
	// its door's framing, fits beside what waits; an event that could
	// never fit is dropped.
	monitorBacklog = 64 << 10
	// monitorFraming is room enough for any door's framing of an event:
	// the EVENT frame's header and topic, the WebSocket's notification.
	monitorFraming = 128
	// monitorPoll is how often a waiting watcher looks again.
	monitorPoll = 5 * time.Millisecond
)

// watchFilter is what a watcher wants to see.
type watchFilter struct {
	client uint64 // only this client's requests; 0: every client's
	method string // only this method's; "": every method's
	frames bool   // with the frames as on the wire
}

// watcher is a session watching the monitor stream.
type watcher struct {
	sess   *session                    // set at construction
	filter atomic.Pointer[watchFilter] // replaced by a new sys.monitor
	events chan *watched               // set at construction: the buffer; never closed
	stop   chan struct{}               // closed when the watch ends (hub.unwatch)
	lost   atomic.Uint64               // records dropped and not yet told
	// dropped is set by a drop: the next record offered with room is
	// preceded by lostMark, and the watcher's goroutine tells the count
	// when it has emptied the buffer.
	dropped atomic.Bool
	poll    *time.Timer // owned by run: paces send
}

// lostMark in a watcher's buffer says: tell the watcher what it lost.
var lostMark = &watched{}

// watched is one request and its answer as the monitor shows them: what
// the request path copies, for the watchers' goroutines to decode and
// encode. It does not change once offered to them.
type watched struct {
	at        time.Time
	took      time.Duration
	client    uint64
	door      string
	method    string
	m         *service.Method // decodes a binary payload and result; nil when unknown
	json      bool            // params and result are JSON already (a JSON door)
	params    []byte          // the payload, whole up to monitorShown, else its first monitorClip bytes
	paramsLen int
	result    []byte // the answer's payload in the same way, when it succeeded
	resultLen int
	code      wire.Code // 0: it succeeded
	msg       string
	// The frames, when a watcher asked for them: at most monitorClip
	// bytes each, and their whole lengths.
	frames                bool
	request, answer       []byte
	requestLen, answerLen int
	order                 string // the legacy client's byte order
}

// tap is a request some watchers want, from its arrival to its answer.
type tap struct {
	ev watched
	to []*watcher // the watchers that had room for it when it came
}

// requestWire is a codec that can show the monitor a request as it was on
// the wire. The native and legacy codecs rebuild it from the decoded
// request, byte for byte; a door whose own engine answers (JSON-RPC) gives
// its messages to Server.Watched instead.
type requestWire interface {
	// appendRequest appends at most limit bytes of r as it was on the wire,
	// and returns the whole length and the byte order of the client's
	// integers where the client chose it ("" elsewhere).
	appendRequest(dst []byte, r request, limit int) (b []byte, n int, order string)
}

// keepPayload copies a payload for a record: whole when an event may show
// it as JSON, else its start.
func keepPayload(b []byte) []byte {
	if len(b) > monitorShown {
		b = b[:monitorClip]
	}
	return bytes.Clone(b)
}

// clip copies at most monitorClip bytes of a frame.
func clip(b []byte) []byte { return bytes.Clone(b[:min(len(b), monitorClip)]) }

// shownMethod is a method's name as an event shows it: as it is when it
// could be a method's (wire.CheckMethod). Any other name, which only the
// JSON doors let through (of any length, with any characters), is shown
// quoted as a Go string with everything but printable ASCII escaped
// ("a\x1bb"); over monitorMethod bytes, it is cut, with "..." after its
// closing quote. Nothing of a long name is kept but what is shown.
func shownMethod(name string) string {
	if wire.CheckMethod(name) == nil {
		return name
	}
	const cut = `"...`
	var scratch [16]byte
	b := append(make([]byte, 0, monitorMethod), '"')
	fit := len(b) // how much of b leaves room for cut
	for i := 0; i < len(name); {
		_, n := utf8.DecodeRuneInString(name[i:]) // an invalid byte: n is 1, shown as \x..
		e := strconv.AppendQuoteToASCII(scratch[:0], name[i:i+n])
		e = e[1 : len(e)-1]
		if len(b)+len(e)+1 > monitorMethod {
			return string(append(b[:fit], cut...))
		}
		if b = append(b, e...); len(b)+len(cut) <= monitorMethod {
			fit = len(b)
		}
		i += n
	}
	return string(append(b, '"'))
}

// clipText is s, or a copy of its first bytes (on a character's boundary)
// and "..." when it is longer than n bytes: an error's message as an
// event shows it.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("...")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..." // a new string: s is not kept
}

// wants reports whether w wants a request of client id to method. A
// watcher never sees its own requests: its sys.monitor, say.
func (w *watcher) wants(id uint64, method string) (bool, *watchFilter) {
	f := w.filter.Load()
	return w.sess.caller.ID != id && (f.client == 0 || f.client == id) && (f.method == "" || f.method == method), f
}

// full reports whether w's buffer has no room for a record.
func (w *watcher) full() bool { return len(w.events) == cap(w.events) }

// pick returns the watchers of ws that want a request of client id to
// method and have room for it, and whether any of them wants its frames.
// A watcher without room counts it lost, with no more work.
func pick(ws []*watcher, id uint64, method string) (to []*watcher, frames bool) {
	for _, w := range ws {
		ok, f := w.wants(id, method)
		if !ok {
			continue
		}
		if w.full() {
			w.drop()
			continue
		}
		to = append(to, w)
		frames = frames || f.frames
	}
	return to, frames
}

// anyRoom is pick without the list: whether a watcher of ws that wants a
// request of client id to method has room for it, and whether one of those
// wants its frames. When none has room, each one that wants it counts it
// lost; otherwise pick, called next, counts what it finds full.
func anyRoom(ws []*watcher, id uint64, method string) (room, frames bool) {
	for _, w := range ws {
		if ok, f := w.wants(id, method); ok && !w.full() {
			room, frames = true, frames || f.frames
		}
	}
	if !room {
		for _, w := range ws {
			if ok, _ := w.wants(id, method); ok {
				w.drop()
			}
		}
	}
	return room, frames
}

// newTap returns the tap of a request some watchers want, or nil. The
// request path calls it only while someone watches (ws is the hub's
// watchers, not nil), on the reader: r's slices are still valid.
func (s *session) newTap(ws []*watcher, r request) *tap {
	var name string
	if r.m != nil && r.m != s.srv.reg.Fallback() {
		name = r.m.Name // a legacy command names the method it runs
	} else {
		name = string(r.name) // unknown, or forwarded by the fallback
	}
	to, frames := pick(ws, s.caller.ID, name)
	if to == nil {
		return nil
	}
	t := &tap{to: to, ev: watched{at: time.Now(), client: s.caller.ID, door: s.door.name, method: shownMethod(name), m: r.m,
		params: keepPayload(r.payload), paramsLen: len(r.payload)}}
	if rw, ok := s.codec.(requestWire); ok && frames {
		t.ev.frames = true
		t.ev.request, t.ev.requestLen, t.ev.order = rw.appendRequest(nil, r, monitorClip)
	}
	return t
}

// answered completes the record with the answer and offers it to the
// watchers: the method that served it (nil: none), its payload or the
// error's code and message, and the answer's bytes as they go out. It
// copies what it keeps, so those slices may be reused at once, and keeps
// at most monitorClip bytes of the message.
func (t *tap) answered(m *service.Method, resp []byte, code wire.Code, msg string, answer []byte) {
	ev := &t.ev
	ev.took = time.Since(ev.at)
	if m != nil && !ev.json {
		ev.m = m
	}
	if code == 0 {
		ev.result, ev.resultLen = keepPayload(resp), len(resp)
	} else {
		ev.code, ev.msg = code, clipText(msg, monitorClip)
	}
	if ev.frames {
		ev.answer, ev.answerLen = clip(answer), len(answer)
	}
	for _, w := range t.to {
		w.offer(ev)
	}
}

// errorText is the message answered with code for err: what the monitor
// shows.
func errorText(code wire.Code, err error) string {
	if code == 0 {
		return ""
	}
	return service.ErrorMessage(code, err)
}

// drop counts a record the watcher had no room for.
func (w *watcher) drop() {
	w.lost.Add(1)
	w.dropped.Store(true)
}

// offer puts a record in the watcher's buffer, or drops it when the buffer
// is full; it never waits. After drops, the first record with room is
// preceded by lostMark, so that the watcher is told where they happened.
func (w *watcher) offer(ev *watched) {
	if w.dropped.Load() && w.dropped.CompareAndSwap(true, false) {
		select {
		case w.events <- lostMark:
		default:
			w.drop()
			return
		}
	}
	select {
	case w.events <- ev:
	default:
		w.drop()
	}
}

// run is the watcher's goroutine: it encodes the records of its buffer as
// events and queues them on its connection, no faster than the connection
// takes them, until the watch ends. Its owner is the hub: unwatch stops
// it.
func (w *watcher) run() {
	w.poll = time.NewTimer(monitorPoll)
	defer w.poll.Stop()
	// An event over the client's max frame would end its connection, and
	// one over the backlog could never be queued: they are dropped. The
	// caps on what a record keeps make them rare (params and a result of
	// 4 KiB that JSON escapes many times over, a tiny max frame).
	limit := min(w.sess.srv.maxPayload-1-len(TopicMonitor), monitorBacklog-monitorFraming)
	for {
		var ev *watched
		select {
		case <-w.stop:
			return
		case ev = <-w.events:
		}
		if ev == lostMark {
			if !w.tellLost() {
				return
			}
		} else if b, err := json.Marshal(ev.event(w.filter.Load().frames)); err != nil || len(b) > limit {
			w.drop() // told with the next notice
		} else if !w.send(b) {
			return
		}
		// Drops after the last record: told once the buffer is empty.
		if len(w.events) == 0 && w.dropped.CompareAndSwap(true, false) && !w.tellLost() {
			return
		}
	}
}

// send queues an event on the connection once the connection has room
// for it: the event, in its door's framing, and what waits unwritten
// within monitorBacklog. Meanwhile the buffer fills, and then drops. It
// reports false when the watch ends first.
func (w *watcher) send(b []byte) bool {
	for w.sess.out.Len()+len(b)+monitorFraming > monitorBacklog {
		w.poll.Reset(monitorPoll)
		select {
		case <-w.stop:
			return false
		case <-w.poll.C:
		}
	}
	w.sess.sendEvent(TopicMonitor, b)
	return true
}

// lostNotice is the JSON of a notice of lost events (see
// status.MonitorEvent).
type lostNotice struct {
	Time time.Time `json:"time"`
	Lost uint64    `json:"lost"`
}

// tellLost sends the notice of the records dropped since the last one. It
// reports false when the watch ends first.
func (w *watcher) tellLost() bool {
	n := w.lost.Swap(0)
	if n == 0 {
		return true
	}
	b, _ := json.Marshal(lostNotice{Time: time.Now(), Lost: n}) // a time and a number always marshal
	return w.send(b)
}

// event decodes the record as the monitor's event, with its frames when
// the watcher asked for them.
func (ev *watched) event(frames bool) status.MonitorEvent {
	e := status.MonitorEvent{
		Time: ev.at, Client: ev.client, Door: ev.door, Method: ev.method, ParamsLen: ev.paramsLen,
		DurationUS: math.Round(float64(ev.took)/100) / 10,
	}
	whole := ev.paramsLen == len(ev.params)
	switch {
	case ev.json && whole && len(ev.params) > 0:
		e.Params = ev.params
	case !ev.json && whole:
		e.Params = paramsOf(ev.m, ev.params)
	}
	if e.Params == nil && ev.paramsLen > 0 {
		e.ParamsBase64 = ev.params[:min(len(ev.params), monitorClip)]
	}
	if ev.code != 0 {
		e.Error = &status.MonitorError{Code: uint16(ev.code), Name: ev.code.String(), Message: ev.msg}
	} else {
		e.ResultLen = ev.resultLen
		whole := ev.resultLen == len(ev.result)
		switch {
		case ev.json && whole:
			e.Result = ev.result
		case !ev.json && whole:
			e.Result = resultOf(ev.m, ev.result)
		}
		if e.Result == nil && ev.resultLen > 0 {
			e.ResultBase64 = ev.result[:min(len(ev.result), monitorClip)]
		}
	}
	if frames && ev.frames {
		e.Frames = &status.MonitorFrames{Request: ev.request, RequestLen: ev.requestLen,
			Answer: ev.answer, AnswerLen: ev.answerLen, Order: ev.order}
	}
	return e
}

// paramsOf returns a request payload as the JSON params of its method, or
// nil. A JSON method's payload is JSON already. A binary method's codec
// turns JSON params into payloads but not back, so the usual shapes of
// params are tried (big-endian int64s, one string), and one is shown only
// when the method's own codec turns it into exactly this payload.
func paramsOf(m *service.Method, payload []byte) json.RawMessage {
	if m == nil || len(payload) == 0 {
		return nil
	}
	if m.Desc.Binary == "" && json.Valid(payload) {
		return payload
	}
	if m.JSON == nil || m.JSON.Params == nil {
		return nil
	}
	same := func(params []byte) bool {
		out, err := m.JSON.Params(params, nil)
		return err == nil && bytes.Equal(out, payload)
	}
	if n := len(payload); n%8 == 0 && n <= 64 {
		p := []byte{'['}
		for i := 0; i < n; i += 8 {
			if i > 0 {
				p = append(p, ',')
			}
			p = strconv.AppendInt(p, int64(binary.BigEndian.Uint64(payload[i:])), 10)
		}
		if p = append(p, ']'); same(p) {
			return p
		}
	}
	if utf8.Valid(payload) {
		if p, err := json.Marshal([]string{string(payload)}); err == nil && same(p) {
			return p
		}
	}
	return nil
}

// resultOf returns an answer's payload as the JSON result of its method,
// or nil when it has none.
func resultOf(m *service.Method, payload []byte) json.RawMessage {
	if m == nil || m.JSON == nil || m.JSON.Result == nil {
		return nil
	}
	out, err := m.JSON.Result(payload, nil)
	if err != nil || !json.Valid(out) {
		return nil
	}
	return out
}

// ErrWatchMethod refuses a Monitor filter that cannot be a method's name.
var ErrWatchMethod = errors.New("server: method must be 1 to 255 bytes of printable ASCII")

// Monitor makes client id a watcher of the monitor stream (sys.monitor):
// events of TopicMonitor follow for the requests of client (0: every
// client but the watcher) to method ("": every method), with their frames
// when frames is set. A second call replaces the filter. Only a connected
// client of a door with events may watch (else ErrNoEvents).
func (s *Server) Monitor(id, client uint64, method string, frames bool) error {
	if method != "" && wire.CheckMethod(method) != nil {
		return ErrWatchMethod
	}
	sess := s.table.get(id)
	if sess == nil || !sess.codec.Events() {
		return ErrNoEvents
	}
	return s.hub.watch(sess, &watchFilter{client: client, method: method, frames: frames})
}

// Unmonitor ends client id's watch of the monitor stream (sys.unmonitor).
// It reports whether there was one.
func (s *Server) Unmonitor(id uint64) bool {
	sess := s.table.get(id)
	return sess != nil && s.hub.unwatch(sess)
}

// WatchedCall is a call answered by a door's own engine (JSON-RPC), as
// the monitor stream shows it: see Watching and Watched.
type WatchedCall struct {
	Method  string    // as the client sent it: any string (see shownMethod)
	Start   time.Time // when the call began
	Params  []byte    // its params in JSON; nil: none
	Result  []byte    // its result in JSON, when Code is 0
	Code    wire.Code // 0: it succeeded
	Message string    // the error's message
	// Request and Answer are the call and its response as they were on
	// the wire, when Watching asked for frames; Answer is nil for a
	// notification, which is not answered.
	Request, Answer []byte
}

// Watching reports whether the monitor stream wants a call of caller's to
// method, and its frames. A door whose own engine answers whole messages
// (JSON-RPC) asks before each call, and gives the call to Watched once it
// is answered; only then does the call cost more. While nobody watches it
// is one atomic load; while every watcher that wants the call has a full
// buffer, it counts the call lost for each and answers no.
func (s *Server) Watching(caller *service.Caller, method string) (watched, frames bool) {
	ws := s.hub.watchers.Load()
	if ws == nil {
		return false, false
	}
	return anyRoom(*ws, caller.ID, method)
}

// Watched gives the monitor stream a call that Watching said was watched;
// it copies what it keeps, capped.
func (s *Server) Watched(caller *service.Caller, c WatchedCall) {
	ws := s.hub.watchers.Load()
	if ws == nil {
		return
	}
	to, frames := pick(*ws, caller.ID, c.Method)
	if to == nil {
		return
	}
	t := &tap{to: to, ev: watched{at: c.Start, client: caller.ID, door: caller.Door, method: shownMethod(c.Method), json: true,
		params: keepPayload(c.Params), paramsLen: len(c.Params)}}
	if frames && c.Request != nil {
		t.ev.frames = true
		t.ev.request, t.ev.requestLen = clip(c.Request), len(c.Request)
	}
	t.answered(nil, c.Result, c.Code, c.Message, c.Answer)
}

// appendRequest rebuilds a REQUEST frame from its decoded fields: the
// header, the deadline and trace context when it had them, the method and
// the payload. At most limit bytes are appended; n is the whole length.
func (n *nativeConn) appendRequest(dst []byte, r request, limit int) ([]byte, int, string) {
	var flags wire.Flags
	var ms uint32
	body := 1 + len(r.name) + len(r.payload)
	if r.timeout > 0 || r.expired {
		flags |= wire.FlagDeadline
		ms = uint32(r.timeout / time.Millisecond)
		body += 4
	}
	if r.trace != nil {
		flags |= wire.FlagTrace
		body += wire.TraceLen
	}
	whole := wire.HeaderLen + body
	payload := r.payload[:min(len(r.payload), max(0, limit-(whole-len(r.payload))))]
	start := len(dst)
	dst = wire.AppendRequestFlags(dst, r.ref, flags, ms, r.trace, string(r.name), payload)
	binary.BigEndian.PutUint32(dst[start:], uint32(whole-4)) // the length field of the whole frame
	return dst[:min(len(dst), start+limit)], whole, ""
}

// appendRequest rebuilds a legacy packet from its decoded fields, in the
// byte order of the connection.
func (c *legacyConn) appendRequest(dst []byte, r request, limit int) ([]byte, int, string) {
	order, _ := c.dec.Order().(binary.AppendByteOrder)
	if order == nil || len(r.payload) != 16 {
		return dst, 0, ""
	}
	a, b := int16(binary.BigEndian.Uint64(r.payload)), int16(binary.BigEndian.Uint64(r.payload[8:]))
	start := len(dst)
	dst = legacy.Append(dst, order, string(r.name), a, b)
	name := "big-endian"
	if order == binary.LittleEndian {
		name = "little-endian"
	}
	return dst[:min(len(dst), start+limit)], len(dst) - start, name
}
