package server

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// Tests of the monitor stream's pieces: what a record keeps, what the
// request path does for a full buffer, what a watcher's goroutine drops.

// idleWatcher makes sess a watcher of s that wants everything with its
// frames, without its goroutine: what is offered stays in its buffer.
func idleWatcher(s *Server, sess *session) *watcher {
	w := &watcher{sess: sess, events: make(chan *watched, monitorBuffer), stop: make(chan struct{})}
	w.filter.Store(&watchFilter{frames: true})
	ws := []*watcher{w}
	if p := s.hub.watchers.Load(); p != nil {
		ws = append(ws, *p...)
	}
	s.hub.watchers.Store(&ws)
	return w
}

// TestMonitorShownMethod: a method's name is shown as it is when it could
// be one; any other is quoted, escaped to printable ASCII and cut at 255
// bytes, with "..." after its quote when cut.
func TestMonitorShownMethod(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"math.add", "math.add"},
		{strings.Repeat("m", 255), strings.Repeat("m", 255)},
		{"", `""`},
		{"a b", `"a b"`},
		{`q"\ x`, `"q\"\\ x"`},
		{"\x1b]0;pwned\a\x1b[2Jx", `"\x1b]0;pwned\a\x1b[2Jx"`},
		{"é\xff\u0085\u202e", `"\u00e9\xff\u0085\u202e"`},
		{strings.Repeat("m", 256), `"` + strings.Repeat("m", 250) + `"...`},
		{strings.Repeat("<", 1<<20), `"` + strings.Repeat("<", 250) + `"...`},
		{strings.Repeat("\x00", 100), `"` + strings.Repeat(`\x00`, 62) + `"...`},
		{strings.Repeat("\x00", 63), `"` + strings.Repeat(`\x00`, 63) + `"`},
		{strings.Repeat("a", 250) + "\x00", `"` + strings.Repeat("a", 250) + `"...`},
	} {
		got := shownMethod(tt.name)
		if got != tt.want || len(got) > monitorMethod {
			t.Errorf("shownMethod(%.40q) = %q (%d bytes), want %q", tt.name, got, len(got), tt.want)
		}
	}
	for _, tt := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 512, "short"},
		{strings.Repeat("x", 512), 512, strings.Repeat("x", 512)},
		{strings.Repeat("x", 513), 512, strings.Repeat("x", 509) + "..."},
		{strings.Repeat("x", 508) + "ééé", 512, strings.Repeat("x", 508) + "..."},
	} {
		if got := clipText(tt.s, tt.n); got != tt.want {
			t.Errorf("clipText(%.20q..., %d) = ...%q, want ...%q", tt.s, tt.n, got[max(0, len(got)-8):], tt.want[max(0, len(tt.want)-8):])
		}
	}
}

// TestMonitorRecordBounded: whatever a client sends, a record holds about
// 10 KiB at most: a name and a message of 1 MiB each, and params, a
// result and frames of 1 MiB, are cut as they are copied, and nothing
// more of them is kept. A slow watcher's 1024 records then hold about
// 10 MiB, not gigabytes.
func TestMonitorRecordBounded(t *testing.T) {
	s := newTestServer(t, Config{})
	sess, _ := connect(s, "watcher")
	w := idleWatcher(s, sess)
	caller := &service.Caller{ID: sess.caller.ID + 1, Door: "http"}
	const n = 64
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		name := strings.Repeat("<", 1<<20) // a new one each time, as each request's
		big := []byte(`["` + name + `"]`)
		s.Watched(caller, WatchedCall{Method: name, Start: time.Now(), Params: big, Result: big, Message: "method not found: " + name,
			Request: big, Answer: big})
		s.Watched(caller, WatchedCall{Method: name, Start: time.Now(), Params: big, Code: wire.CodeUnknownMethod,
			Message: "method not found: " + name, Request: big, Answer: big})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d records hold %d bytes", 2*n, held)
	if held > 2*n*16<<10 {
		t.Errorf("%d records hold %d bytes, %d each; want at most 16 KiB each", 2*n, held, held/(2*n))
	}
	if len(w.events) != 2*n {
		t.Fatalf("%d records, want %d", len(w.events), 2*n)
	}
	for range 2 * n {
		ev := <-w.events
		if len(ev.method) > monitorMethod || len(ev.msg) > monitorClip || len(ev.params) > monitorClip || len(ev.result) > monitorClip ||
			len(ev.request) > monitorClip || len(ev.answer) > monitorClip {
			t.Fatalf("a record keeps %d bytes of method, %d of message, %d and %d of params and result, %d and %d of frames",
				len(ev.method), len(ev.msg), len(ev.params), len(ev.result), len(ev.request), len(ev.answer))
		}
		b, err := json.Marshal(ev.event(true))
		if err != nil || len(b) > 8<<10 {
			t.Fatalf("its event: %d bytes, %v", len(b), err)
		}
	}
	runtime.KeepAlive(w)
}

// TestMonitorFullCostsACount: on a JSON door, a call that every watcher
// wanting it has no room for is counted lost by Watching, which answers
// no: the engine does nothing more. When one of them has room, the others
// count it once, in Watched.
func TestMonitorFullCostsACount(t *testing.T) {
	s := newTestServer(t, Config{})
	a, _ := connect(s, "a")
	b, _ := connect(s, "b")
	wa, wb := idleWatcher(s, a), idleWatcher(s, b)
	caller := &service.Caller{ID: b.caller.ID + 1, Door: "ws"}
	for len(wa.events) < cap(wa.events) {
		wa.events <- lostMark
	}
	if watched, frames := s.Watching(caller, "math.add"); !watched || !frames {
		t.Fatalf("Watching with room in one watcher: %v, %v", watched, frames)
	}
	s.Watched(caller, WatchedCall{Method: "math.add", Start: time.Now()})
	if len(wb.events) != 1 || wa.lost.Load() != 1 {
		t.Errorf("one full, one with room: %d offered to the one, %d lost by the other; want 1 and 1", len(wb.events), wa.lost.Load())
	}
	for len(wb.events) < cap(wb.events) {
		wb.events <- lostMark
	}
	if watched, _ := s.Watching(caller, "math.add"); watched {
		t.Error("Watching with every buffer full: yes")
	}
	if wa.lost.Load() != 2 || wb.lost.Load() != 1 {
		t.Errorf("every buffer full: %d and %d lost, want 2 and 1", wa.lost.Load(), wb.lost.Load())
	}
}

// TestMonitorRunDrops: a watcher's goroutine drops an event over the
// client's max frame, and one it cannot encode, and counts them in its
// notice: it never sends what would end the watcher's connection.
func TestMonitorRunDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestServer(t, Config{MaxFrame: 300})
		sess, rec := connect(s, "watcher")
		if err := s.Monitor(sess.caller.ID, 0, "", false); err != nil {
			t.Fatal(err)
		}
		caller := &service.Caller{ID: sess.caller.ID + 1, Door: "http"}
		for _, params := range []string{`[1]`, `[` + strings.Repeat("1,", 200) + `1]`, `[2]`} {
			s.Watched(caller, WatchedCall{Method: "m.ok", Start: time.Now(), Params: []byte(params), Result: []byte(`1`)})
			s.Watched(caller, WatchedCall{Method: "m.bad", Start: time.Now(), Params: []byte(params), Result: []byte(`{`)}) // not JSON
			synctest.Wait()
		}
		s.Unmonitor(sess.caller.ID)
		var shown []string
		var lost uint64
		for _, ev := range rec.taken() {
			if len(ev.payload) > s.maxPayload-1-len(TopicMonitor) {
				t.Errorf("an event of %d bytes was sent: %s", len(ev.payload), ev.payload)
			}
			var e struct {
				Method string `json:"method"`
				Lost   uint64 `json:"lost"`
			}
			if err := json.Unmarshal(ev.payload, &e); err != nil {
				t.Fatal(err)
			}
			if e.Lost > 0 {
				lost += e.Lost
			} else {
				shown = append(shown, e.Method)
			}
		}
		if len(shown) != 2 || shown[0] != "m.ok" || shown[1] != "m.ok" || lost != 4 {
			t.Errorf("shown %q and %d lost; want m.ok twice and 4 lost", shown, lost)
		}
	})
}
