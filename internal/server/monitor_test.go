package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	. "github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/wire"
)

// watch sends sys.monitor with params on a native connection and checks
// that it was accepted.
func watch(t *testing.T, c *Conn, id uint32, params string) {
	t.Helper()
	c.Send(wire.AppendRequest(nil, id, "sys.monitor", []byte(params)))
	if f := c.Read(); f.Type != wire.TypeResponse || f.ID != id {
		t.Fatalf("sys.monitor %s: %s", params, String(f))
	}
}

// nextEvent reads frames until an event of the monitor stream.
func nextEvent(t *testing.T, c *Conn) status.MonitorEvent {
	t.Helper()
	for {
		f := c.Read()
		if f.Type != wire.TypeEvent {
			continue
		}
		topic, payload, err := wire.ParseEvent(f.Body)
		if err != nil || string(topic) != server.TopicMonitor {
			continue
		}
		var ev status.MonitorEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			t.Fatalf("event %s: %v", payload, err)
		}
		return ev
	}
}

// call sends a native request and reads its answer, whole as it came.
func call(t *testing.T, c *Conn, req []byte) []byte {
	t.Helper()
	c.Send(req)
	f := c.Read()
	if f.Type != wire.TypeResponse && f.Type != wire.TypeError {
		t.Fatalf("answer: %s", String(f))
	}
	return wire.AppendFrame(nil, f.Type, f.Flags, f.ID, f.Body)
}

// wsDial opens a WebSocket client on the web door and reads its welcome.
func wsDial(t *testing.T, srv *Server, hdr http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+srv.Web+"/ws", &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	wsRead(t, ws) // event.welcome
	return ws
}

// wsRead reads one message of a WebSocket client.
func wsRead(t *testing.T, ws *websocket.Conn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wsCall sends msg and returns the next message, its answer.
func wsCall(t *testing.T, ws *websocket.Conn, msg string) []byte {
	t.Helper()
	if err := ws.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	return wsRead(t, ws)
}

// TestMonitor: an admin watching the monitor stream sees the requests of
// the other clients on every door, decoded: client, door, method, params,
// result or error, duration, time; with frames, the request and the
// answer as they were on the wire, and the legacy client's byte order.
func TestMonitor(t *testing.T) {
	srv := Start(t, FastConfig())
	watcher, _ := Hello(t, srv.Native, "watcher")
	watch(t, watcher, 1, `{"frames":true}`)
	before := time.Now()

	check := func(t *testing.T, ev status.MonitorEvent, client uint64, door, method, params, result string) {
		t.Helper()
		if ev.Client != client || ev.Door != door || ev.Method != method || string(ev.Params) != params ||
			string(ev.Result) != result || ev.Error != nil || ev.DurationUS <= 0 || ev.Time.Before(before) || time.Since(ev.Time) > time.Minute {
			t.Errorf("event %+v (params %s, result %s), want client %d door %s %s %s → %s", ev, ev.Params, ev.Result, client, door, method, params, result)
		}
	}
	frames := func(t *testing.T, ev status.MonitorEvent, req, ans []byte, order string) {
		t.Helper()
		f := ev.Frames
		if f == nil || !bytes.Equal(f.Request, req) || f.RequestLen != len(req) || !bytes.Equal(f.Answer, ans) ||
			f.AnswerLen != len(ans) || f.Order != order {
			t.Errorf("frames %+v, want request %x, answer %x (%q), order %q", f, req, ans, ans, order)
		}
	}

	t.Run("native", func(t *testing.T) {
		c, w := Hello(t, srv.Native, "native")
		req := wire.AppendRequest(nil, 7, "math.add", Operands(1, 2))
		ans := call(t, c, req)
		ev := nextEvent(t, watcher)
		check(t, ev, w.ClientID, "native", "math.add", "[1,2]", "3")
		frames(t, ev, req, ans, "")
		if ev.ParamsLen != 16 || ev.ResultLen != 8 {
			t.Errorf("params_len %d, result_len %d; want the binary payloads' 16 and 8", ev.ParamsLen, ev.ResultLen)
		}

		// A deadline is part of the frame; an error is decoded.
		req = wire.AppendRequestDeadline(nil, 8, 1000, "math.div", Operands(1, 0))
		ans = call(t, c, req)
		ev = nextEvent(t, watcher)
		if e := ev.Error; e == nil || e.Code != uint16(wire.CodeDivisionByZero) || e.Name != "DIVISION_BY_ZERO" || e.Message == "" || ev.Result != nil {
			t.Errorf("math.div by 0: %+v, error %+v", ev, e)
		}
		frames(t, ev, req, ans, "")

		// A method nobody serves is shown under the name sent; a JSON
		// method's params as they are.
		req = wire.AppendRequest(nil, 9, "no.such", []byte("x"))
		ans = call(t, c, req)
		if ev = nextEvent(t, watcher); ev.Method != "no.such" || ev.Error == nil || ev.Error.Name != "UNKNOWN_METHOD" || string(ev.ParamsBase64) != "x" {
			t.Errorf("unknown method: %+v %+v", ev, ev.Error)
		}
		frames(t, ev, req, ans, "")
		call(t, c, wire.AppendRequest(nil, 10, "sys.echo", []byte("héllo")))
		check(t, nextEvent(t, watcher), w.ClientID, "native", "sys.echo", `["héllo"]`, `"héllo"`)
		call(t, c, wire.AppendRequest(nil, 11, "sys.describe", []byte(`["math.add"]`)))
		if ev = nextEvent(t, watcher); string(ev.Params) != `["math.add"]` || !strings.Contains(string(ev.Result), `"name":"math.add"`) {
			t.Errorf("sys.describe: params %s, result %s", ev.Params, ev.Result)
		}

		// Big payloads and frames are cut, their whole lengths given.
		req = wire.AppendRequest(nil, 12, "sys.echo", bytes.Repeat([]byte("z"), 5000))
		ans = call(t, c, req)
		ev = nextEvent(t, watcher)
		if ev.Params != nil || string(ev.ParamsBase64) != strings.Repeat("z", 512) || ev.ParamsLen != 5000 ||
			ev.Result != nil || string(ev.ResultBase64) != strings.Repeat("z", 512) || ev.ResultLen != 5000 {
			t.Errorf("a big echo: params %q (%d of %d), result %q (%d of %d)", ev.Params, len(ev.ParamsBase64), ev.ParamsLen,
				ev.Result, len(ev.ResultBase64), ev.ResultLen)
		}
		if f := ev.Frames; f == nil || !bytes.Equal(f.Request, req[:512]) || f.RequestLen != len(req) ||
			!bytes.Equal(f.Answer, ans[:512]) || f.AnswerLen != len(ans) {
			t.Errorf("a big echo's frames: %+v", f)
		}
	})

	t.Run("legacy", func(t *testing.T) {
		for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
			c := Dial(t, srv.Legacy)
			req := legacy.Append(nil, order, "SUMA", 3, -4)
			line := c.LegacyLine(req)
			ev := nextEvent(t, watcher)
			id := srv.Clients().Clients[len(srv.Clients().Clients)-1].ID // the newest
			check(t, ev, id, "legacy", "math.add", "[3,-4]", "-1")
			name := map[binary.AppendByteOrder]string{binary.LittleEndian: "little-endian", binary.BigEndian: "big-endian"}[order]
			frames(t, ev, req, []byte(line), name)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		ws := wsDial(t, srv, nil)
		msg := `{"jsonrpc":"2.0","method":"math.div","params":[7,2],"id":"a"}`
		ans := wsCall(t, ws, msg)
		ev := nextEvent(t, watcher)
		var id uint64
		for _, ci := range srv.Clients().Clients {
			if ci.Door == "ws" {
				id = ci.ID
			}
		}
		check(t, ev, id, "ws", "math.div", "[7,2]", "3.5")
		frames(t, ev, []byte(msg), ans, "")
		wsCall(t, ws, `{"jsonrpc":"2.0","method":"math.add","params":[9223372036854775807,1],"id":2}`)
		if ev = nextEvent(t, watcher); ev.Error == nil || ev.Error.Name != "OVERFLOW" || ev.Error.Code != 7 {
			t.Errorf("overflow over the WebSocket: %+v %+v", ev, ev.Error)
		}
	})

	t.Run("http", func(t *testing.T) {
		msg := `{"jsonrpc":"2.0","method":"math.mul","params":[6,7],"id":1}`
		resp, err := http.Post("http://"+srv.Web+"/rpc", "application/json", strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		ans, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ev := nextEvent(t, watcher)
		check(t, ev, 0, "http", "math.mul", "[6,7]", "42")
		frames(t, ev, []byte(msg), bytes.TrimSuffix(ans, []byte("\n")), "")
	})
}

// TestMonitorFilters: a watcher sees only the client and the method it
// asked for, never its own requests; a new sys.monitor replaces the
// filter, and sys.unmonitor ends the stream. Without frames, events have
// none.
func TestMonitorFilters(t *testing.T) {
	srv := Start(t, FastConfig())
	watcher, _ := Hello(t, srv.Native, "watcher")
	a, wa := Hello(t, srv.Native, "a")
	b, wb := Hello(t, srv.Native, "b")
	add := func(c *Conn, x int64) { call(t, c, wire.AppendRequest(nil, 1, "math.add", Operands(x, 0))) }
	sub := func(c *Conn, x int64) { call(t, c, wire.AppendRequest(nil, 1, "math.sub", Operands(x, 0))) }
	expect := func(client uint64, method, params string) {
		t.Helper()
		ev := nextEvent(t, watcher)
		if ev.Client != client || ev.Method != method || string(ev.Params) != params || ev.Frames != nil {
			t.Fatalf("got client %d %s %s (frames %v), want client %d %s %s", ev.Client, ev.Method, ev.Params, ev.Frames, client, method, params)
		}
	}

	watch(t, watcher, 1, fmt.Sprintf(`{"client":%d}`, wa.ClientID))
	add(b, 1)       // another client
	add(watcher, 2) // the watcher's own
	add(a, 3)       // the one
	expect(wa.ClientID, "math.add", "[3,0]")

	watch(t, watcher, 2, `{"method":"math.sub"}`)
	add(a, 4)
	sub(watcher, 5)
	sub(b, 6)
	expect(wb.ClientID, "math.sub", "[6,0]")

	watch(t, watcher, 3, fmt.Sprintf(`{"client":%d,"method":"math.sub"}`, wb.ClientID))
	sub(a, 7)
	add(b, 8)
	sub(b, 9)
	expect(wb.ClientID, "math.sub", "[9,0]")

	c := wire.AppendRequest(nil, 4, "sys.unmonitor", nil)
	if f := call(t, watcher, c); !bytes.HasSuffix(f, []byte("true")) {
		t.Fatalf("sys.unmonitor: %q", f)
	}
	sub(b, 10) // unwatched
	watch(t, watcher, 5, `{}`)
	add(a, 11)
	expect(wa.ClientID, "math.add", "[11,0]")

	for _, params := range []string{`{"client":0}`, `{"method":""}`, `{"nope":1}`, `[1]`, `{"method":"a b"}`} {
		watcher.Send(wire.AppendRequest(nil, 6, "sys.monitor", []byte(params)))
		watcher.ExpectError(6, wire.CodeBadPayload)
	}
}

// TestMonitorPrivilege: sys.monitor and sys.unmonitor answer only admins;
// others get what sys.kick gives them, whatever their params, on every
// door. A caller without a session (POST /rpc) cannot watch.
func TestMonitorPrivilege(t *testing.T) {
	cfg := FastConfig()
	cfg.AdminToken = "s3cret"
	srv := Start(t, cfg)
	plain, _ := Hello(t, srv.Native, "plain")
	for i, tt := range []struct{ method, params string }{
		{"sys.kick", `[1]`}, {"sys.monitor", `{}`}, {"sys.monitor", `{"nope":1}`}, {"sys.unmonitor", ``},
	} {
		plain.Send(wire.AppendRequest(nil, uint32(i+1), tt.method, []byte(tt.params)))
		plain.ExpectError(uint32(i+1), wire.CodeUnknownMethod)
	}
	ws := wsDial(t, srv, nil)
	for _, m := range []string{"sys.kick", "sys.monitor"} {
		ans := wsCall(t, ws, `{"jsonrpc":"2.0","method":"`+m+`","params":{},"id":1}`)
		if !strings.Contains(string(ans), `"code":-32601`) {
			t.Errorf("%s for a WebSocket that is not admin: %s", m, ans)
		}
	}

	req, _ := http.NewRequest("POST", "http://"+srv.Web+"/rpc", strings.NewReader(`{"jsonrpc":"2.0","method":"sys.monitor","params":{},"id":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"code":-32602`) {
		t.Errorf("sys.monitor over POST /rpc: %s, want invalid params: no session to send events to", body)
	}

	admin := Dial(t, srv.Native)
	admin.Hello(wire.Hello{Name: "admin", Token: "s3cret"})
	watch(t, admin, 1, `{}`)
	call(t, plain, wire.AppendRequest(nil, 9, "math.mul", Operands(2, 3)))
	if ev := nextEvent(t, admin); ev.Method != "math.mul" || string(ev.Result) != "6" {
		t.Errorf("the admin's stream: %+v", ev)
	}
}

// TestMonitorSlowWatcher: a watcher that does not read loses events, and
// is told how many once it reads again; it is not closed, and every
// request is shown or counted lost. The client it watches is not held
// back: the watcher reads nothing until that client has had every
// answer, so a request path that waited for the watcher would stall it.
func TestMonitorSlowWatcher(t *testing.T) {
	srv := Start(t, FastConfig())
	watcher, ww := Hello(t, srv.Native, "watcher")
	watch(t, watcher, 1, `{"frames":true}`)
	busy, _ := Hello(t, srv.Native, "busy")

	// The watcher reads nothing while the busy client makes far more
	// requests than its buffer and its socket hold.
	const n, burst = 40000, 1000
	var reqs []byte
	for i := range burst {
		reqs = wire.AppendRequest(reqs, uint32(i), "math.add", Operands(int64(i), 1))
	}
	start := time.Now()
	for range n / burst {
		busy.Send(reqs)
		for range burst {
			if f := busy.Read(); f.Type != wire.TypeResponse {
				t.Fatalf("busy client: %s", String(f))
			}
		}
	}
	t.Logf("%d requests in %v while the watcher read nothing", n, time.Since(start))

	shown, lost, notices := 0, uint64(0), 0
	for shown+int(lost) < n {
		ev := nextEvent(t, watcher)
		if ev.Lost > 0 {
			lost += ev.Lost
			notices++
			continue
		}
		if ev.Method != "math.add" {
			t.Fatalf("event %+v", ev)
		}
		shown++
	}
	t.Logf("%d shown, %d lost in %d notices", shown, lost, notices)
	if lost == 0 || shown == 0 {
		t.Errorf("%d shown, %d lost: want some of each", shown, lost)
	}
	if shown+int(lost) != n {
		t.Errorf("%d shown + %d lost, want %d", shown, lost, n)
	}
	if _, ok := srv.Client(ww.ClientID); !ok {
		t.Error("the slow watcher was closed")
	}
}

// TestMonitorCostsNothingUnwatched: while nobody watches, a request
// allocates nothing more in the server (the request path loads one
// pointer); watched, it does, which shows the measure can tell. A watcher
// whose buffer is full costs a count and nothing more, on the native door
// and over the WebSocket (the JSON-RPC engine's calls), inline or not:
// what a request allocates then is what it allocates unwatched. Once the
// watcher has gone, nothing again.
func TestMonitorCostsNothingUnwatched(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations over thousands of requests")
	}
	// No heartbeat in the measures: a PING would come where an answer is
	// read (it did under -race, past the default interval).
	srv := Start(t, server.Config{Heartbeat: time.Hour})
	c, _ := Hello(t, srv.Native, "allocs")
	ws := wsDial(t, srv, nil)
	// perRun is testing.AllocsPerRun without its rounding down: the
	// allocations of the whole process (the server's, and the test
	// clients', which are the same each time) per call of f.
	perRun := func(runs int, f func()) float64 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		f()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			f()
		}
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / float64(runs)
	}
	nativeCall := func(req []byte) func() {
		return func() {
			c.Send(req)
			if f, err := c.Rd.ReadFrame(); err != nil || f.Type != wire.TypeResponse {
				t.Fatalf("%v %v", f.Type, err)
			}
		}
	}
	wsCall := func(msg string) func() {
		return func() {
			if err := ws.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, b, err := ws.Read(context.Background()); err != nil || !bytes.Contains(b, []byte(`"result"`)) {
				t.Fatalf("%s: %s %v", msg, b, err)
			}
		}
	}
	native := nativeCall(wire.AppendRequest(nil, 1, "math.add", Operands(1, 2)))
	paths := []struct {
		name string
		call func()
	}{
		{"native, not inline", nativeCall(wire.AppendRequest(nil, 1, "test.sleep", Ms(0)))},
		{"WebSocket, inline", wsCall(`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`)},
		{"WebSocket, not inline", wsCall(`{"jsonrpc":"2.0","method":"test.sleep","params":[0],"id":1}`)},
	}
	const runs = 1000
	if got := testing.AllocsPerRun(runs, native); got != 0 {
		t.Errorf("nobody watching: %v allocations per request, want 0", got)
	}
	unwatched := make([]float64, len(paths))
	for i, p := range paths {
		unwatched[i] = perRun(runs, p.call)
	}

	watcher, ww := Hello(t, srv.Native, "watcher")
	watch(t, watcher, 1, `{"frames":true}`)
	if got := testing.AllocsPerRun(runs, native); got < 1 {
		t.Errorf("watched: %v allocations per request; the measure cannot tell", got)
	}
	if got := perRun(runs, paths[1].call); got < unwatched[1]+1 {
		t.Errorf("watched over the WebSocket: %.2f allocations per request, %.2f unwatched; the measure cannot tell", got, unwatched[1])
	}
	// The watcher reads nothing: once its socket and its buffer are
	// full, and stay so, a native request allocates nothing again.
	var burst []byte
	for i := range 1000 {
		burst = wire.AppendRequest(burst, uint32(i), "math.add", Operands(int64(i), 1))
	}
	fill := func() {
		c.Send(burst)
		for range 1000 {
			if f := c.Read(); f.Type != wire.TypeResponse {
				t.Fatalf("%s", String(f))
			}
		}
	}
	// The socket may take more now and then for a while (the kernel
	// grows its buffers; the writer's goroutine takes what is pending
	// into a write that blocks): records then flow, and the taps
	// allocate. So the measure is repeated until every path costs what it
	// costs unwatched; a cost per request of a full watcher would never
	// get there.
	full := make([]float64, len(paths))
	deadline := time.Now().Add(10 * time.Second)
	for {
		fill()
		ok := testing.AllocsPerRun(200, native) == 0
		for i, p := range paths {
			full[i] = perRun(runs, p.call)
			ok = ok && full[i] <= unwatched[i]+0.5
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			for i, p := range paths {
				t.Errorf("%s, the watcher's buffer full: %.2f allocations per request, %.2f unwatched", p.name, full[i], unwatched[i])
			}
			break
		}
	}
	for i, p := range paths {
		t.Logf("%s: %.2f allocations per request unwatched, %.2f with the watcher's buffer full", p.name, unwatched[i], full[i])
	}
	if _, ok := srv.Client(ww.ClientID); !ok {
		t.Fatal("the watcher was closed: its buffer was not full, it was gone")
	}
	watcher.Close()
	WaitFor(t, 5*time.Second, "the watcher to leave", func() bool {
		_, ok := srv.Client(ww.ClientID)
		return !ok
	})
	if got := testing.AllocsPerRun(runs, native); got != 0 {
		t.Errorf("after the watcher left: %v allocations per request, want 0", got)
	}
}

// TestMonitorWebSocketWatcher: a WebSocket client watches too, its events
// arriving as event.monitor notifications; closing the connection ends
// the watch.
func TestMonitorWebSocketWatcher(t *testing.T) {
	srv := Start(t, FastConfig())
	c, w := Hello(t, srv.Native, "watched")
	ws := wsDial(t, srv, nil)
	ans := wsCall(t, ws, fmt.Sprintf(`{"jsonrpc":"2.0","method":"sys.monitor","params":{"client":%d,"frames":true},"id":1}`, w.ClientID))
	if want := fmt.Sprintf(`{"jsonrpc":"2.0","result":{"client":%d,"frames":true},"id":1}`, w.ClientID); string(ans) != want {
		t.Fatalf("sys.monitor answered %s, want %s", ans, want)
	}
	req := wire.AppendRequest(nil, 3, "math.sub", Operands(10, 4))
	frame := call(t, c, req)
	var n struct {
		Method string              `json:"method"`
		Params status.MonitorEvent `json:"params"`
	}
	if err := json.Unmarshal(wsRead(t, ws), &n); err != nil {
		t.Fatal(err)
	}
	ev := n.Params
	if n.Method != "event.monitor" || ev.Client != w.ClientID || ev.Method != "math.sub" || string(ev.Result) != "6" ||
		ev.Frames == nil || !bytes.Equal(ev.Frames.Request, req) || !bytes.Equal(ev.Frames.Answer, frame) {
		t.Errorf("notification %s %+v", n.Method, ev)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	WaitFor(t, 5*time.Second, "the watcher to leave", func() bool { return srv.ClientCount() == 1 })
	call(t, c, req) // nobody to tell: nothing is left waiting
}

// TestMonitorHugeMethod: a method's name of any length and any
// characters, which the JSON doors let through, reaches a watcher quoted,
// escaped and cut at 255 bytes, and its "method not found" message cut at
// 512: the event stays far below the max frame the server announced, and
// the watcher, a Go client that holds the server to it, stays connected.
// A name of "<", which JSON escapes sixfold, does not make it a slow
// consumer either.
func TestMonitorHugeMethod(t *testing.T) {
	srv := Start(t, FastConfig())
	ctx := context.Background()
	events := make(chan []byte, 16)
	c, err := client.Dial(ctx, srv.Native, &client.Options{Name: "watcher", OnEvent: func(topic string, p []byte) {
		if topic == server.TopicMonitor {
			events <- bytes.Clone(p)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Call(ctx, "sys.monitor", []byte(`{"frames":true}`)); err != nil {
		t.Fatal(err)
	}
	ws := wsDial(t, srv, nil)
	ws.SetReadLimit(-1) // its answers repeat the name
	// message is a call of method, as JSON that leaves "<" alone.
	message := func(method string) string {
		var b strings.Builder
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(map[string]any{"jsonrpc": "2.0", "method": method, "id": 1}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	cut := func(s string) string { return `"` + strings.Repeat(s, 250) + `"...` }
	for _, tt := range []struct {
		door, method, shown string
	}{
		{"http", strings.Repeat("a", 600<<10), cut("a")},
		{"http", strings.Repeat("<", 900<<10), cut("<")},
		{"http", "\x1b]0;pwned\a\x1b[2Jx", `"\x1b]0;pwned\a\x1b[2Jx"`},
		{"ws", strings.Repeat("a", 900<<10), cut("a")},
		{"ws", strings.Repeat("<", 300<<10), cut("<")},
		{"ws", "a b\u00e9\u2028", `"a b\u00e9\u2028"`},
	} {
		msg := message(tt.method)
		if tt.door == "http" {
			resp, err := http.Post("http://"+srv.Web+"/rpc", "application/json", strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), `"code":-32601`) {
				t.Fatalf("%d bytes of method over %s: %.200s", len(tt.method), tt.door, body)
			}
		} else if ans := wsCall(t, ws, msg); !strings.Contains(string(ans), `"code":-32601`) {
			t.Fatalf("%d bytes of method over %s: %.200s", len(tt.method), tt.door, ans)
		}
		var p []byte
		select {
		case p = <-events:
		case <-c.Done():
			t.Fatalf("%d bytes of method over %s: the watcher was disconnected: %v", len(tt.method), tt.door, c.Err())
		case <-time.After(5 * time.Second):
			t.Fatalf("%d bytes of method over %s: no event", len(tt.method), tt.door)
		}
		var ev status.MonitorEvent
		if err := json.Unmarshal(p, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Door != tt.door || ev.Method != tt.shown || len(ev.Method) > 255 {
			t.Errorf("%d bytes of method over %s: shown as %q (%d bytes), want %q", len(tt.method), tt.door, ev.Method, len(ev.Method), tt.shown)
		}
		if e := ev.Error; e == nil || e.Name != "UNKNOWN_METHOD" || len(e.Message) > 512 || !strings.HasPrefix(e.Message, "method not found: ") ||
			(len(tt.method) > 512 && !strings.HasSuffix(e.Message, "...")) {
			t.Errorf("%d bytes of method over %s: error %+v", len(tt.method), tt.door, e)
		}
		if f := ev.Frames; f == nil || len(f.Request) != min(512, len(msg)-1) || f.RequestLen != len(msg)-1 { // less the encoder's newline
			t.Errorf("%d bytes of method over %s: frames %+v, want the request's first 512 bytes of %d", len(tt.method), tt.door, f, len(msg)-1)
		}
		if len(p) > 8<<10 {
			t.Errorf("%d bytes of method over %s: an event of %d bytes", len(tt.method), tt.door, len(p))
		}
	}
	if _, err := c.Call(ctx, "sys.echo", []byte("still here")); err != nil {
		t.Errorf("the watcher after the huge names: %v", err)
	}
}
