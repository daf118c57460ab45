package jsonrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/internal/sys"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

type source struct{}

func (source) ClientCount() int { return 0 }
func (source) Clients() status.Snapshot {
	return status.Snapshot{Clients: []status.ClientInfo{}, Closed: []status.ClosedInfo{}}
}
func (source) Stats() status.Stats              { return status.Stats{} }
func (source) History() []status.Sample         { return nil }
func (source) Subscribe(uint64, []string) error { return nil }
func (source) Kick(uint64, string) bool         { return false }

func newRPC(t testing.TB) *RPC {
	reg := service.NewRegistry()
	if err := reg.Register(calc.Methods()...); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(append(sys.Methods(), sys.ServerMethods(source{}, reg, "test")...)...); err != nil {
		t.Fatal(err)
	}
	return NewRPC(reg, 0)
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/rpc", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestConformance posts JSON-RPC messages to a real HTTP server on
// loopback and compares the whole response.
func TestConformance(t *testing.T) {
	srv := httptest.NewServer(newRPC(t).Handler(nil))
	defer srv.Close()
	tests := []struct {
		name, body, want string
	}{
		{"div", `{"jsonrpc":"2.0","method":"math.div","params":[7,2],"id":1}`,
			`{"jsonrpc":"2.0","result":3.5,"id":1}`},
		{"add with string id", `{"jsonrpc":"2.0","method":"math.add","params":[2,3],"id":"a"}`,
			`{"jsonrpc":"2.0","result":5,"id":"a"}`},
		{"null id is a call", `{"jsonrpc":"2.0","method":"math.sub","params":[2,3],"id":null}`,
			`{"jsonrpc":"2.0","result":-1,"id":null}`},
		{"zero quotient is 0", `{"jsonrpc":"2.0","method":"math.div","params":[0,-5],"id":1}`,
			`{"jsonrpc":"2.0","result":0,"id":1}`},
		{"2^53 is accepted", `{"jsonrpc":"2.0","method":"math.add","params":[9007199254740992,-9007199254740992],"id":1}`,
			`{"jsonrpc":"2.0","result":0,"id":1}`},
		{"division by zero", `{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":2}`,
			`{"jsonrpc":"2.0","error":{"code":-32006,"message":"calc: division by zero","data":{"name":"DIVISION_BY_ZERO"}},"id":2}`},
		{"overflow", `{"jsonrpc":"2.0","method":"math.mul","params":[9007199254740992,9007199254740992],"id":3}`,
			`{"jsonrpc":"2.0","error":{"code":-32007,"message":"calc: integer overflow","data":{"name":"OVERFLOW"}},"id":3}`},
		{"every int64 exactly", `{"jsonrpc":"2.0","method":"math.add","params":[9223372036854775806,1],"id":4}`,
			`{"jsonrpc":"2.0","result":9223372036854775807,"id":4}`},
		{"overflow at the int64 edge", `{"jsonrpc":"2.0","method":"math.add","params":[9223372036854775807,1],"id":4}`,
			`{"jsonrpc":"2.0","error":{"code":-32007,"message":"calc: integer overflow","data":{"name":"OVERFLOW"}},"id":4}`},
		{"beyond int64 is refused, not rounded", `{"jsonrpc":"2.0","method":"math.add","params":[1,9223372036854775808],"id":4}`,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"service: invalid params: params[1]: 9223372036854775808 is beyond int64","data":{"name":"BAD_PAYLOAD"}},"id":4}`},
		{"a quotient beyond 2^53 has an exponent, not invented digits", `{"jsonrpc":"2.0","method":"math.div","params":[-9223372036854775808,-1],"id":4}`,
			`{"jsonrpc":"2.0","result":9.223372036854776e+18,"id":4}`},
		{"fraction", `{"jsonrpc":"2.0","method":"math.add","params":[1.5,2],"id":5}`,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"service: invalid params: params[0]: 1.5 is not an integer","data":{"name":"BAD_PAYLOAD"}},"id":5}`},
		{"one param", `{"jsonrpc":"2.0","method":"math.add","params":[1],"id":6}`,
			`{"jsonrpc":"2.0","error":{"code":-32602,"message":"service: invalid params: want [a, b], two integers","data":{"name":"BAD_PAYLOAD"}},"id":6}`},
		{"method not found", `{"jsonrpc":"2.0","method":"no.such","id":7}`,
			`{"jsonrpc":"2.0","error":{"code":-32601,"message":"method not found: no.such","data":{"name":"UNKNOWN_METHOD"}},"id":7}`},
		{"parse error", `{"jsonrpc":"2.0","method":`,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: not valid JSON"},"id":null}`},
		{"wrong version", `{"jsonrpc":"1.0","method":"math.add","params":[1,1],"id":8}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":8}`},
		{"no method", `{"jsonrpc":"2.0","id":9}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"method\" must be a string"},"id":9}`},
		{"params not structured", `{"jsonrpc":"2.0","method":"math.add","params":"1,2","id":10}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: params must be an array or an object"},"id":10}`},
		{"object id", `{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":{}}`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: id must be a string, a number or null"},"id":null}`},
		{"not an object", `1`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: a call must be an object with jsonrpc, method, params and id"},"id":null}`},
		{"empty batch", `[]`,
			`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: empty batch"},"id":null}`},
		{"batch", `[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"math.add","params":[5,5]},{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":2},1]`,
			`[{"jsonrpc":"2.0","result":3,"id":1},{"jsonrpc":"2.0","error":{"code":-32006,"message":"calc: division by zero","data":{"name":"DIVISION_BY_ZERO"}},"id":2},{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: a call must be an object with jsonrpc, method, params and id"},"id":null}]`},
		{"echo", `{"jsonrpc":"2.0","method":"sys.echo","params":["héllo"],"id":1}`,
			`{"jsonrpc":"2.0","result":"héllo","id":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := post(t, srv.URL, tt.body)
			if status != http.StatusOK || got != tt.want {
				t.Errorf("status %d\n got %s\nwant %s", status, got, tt.want)
			}
		})
	}
}

func TestNotificationsAndHTTP(t *testing.T) {
	srv := httptest.NewServer(newRPC(t).Handler(nil))
	defer srv.Close()
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"math.add","params":[1,2]}`,
		`[{"jsonrpc":"2.0","method":"math.add","params":[1,2]},{"jsonrpc":"2.0","method":"no.such"}]`,
	} {
		if status, got := post(t, srv.URL, body); status != http.StatusNoContent || got != "" {
			t.Errorf("notification %s: %d %q", body, status, got)
		}
	}
	resp, err := http.Get(srv.URL + "/rpc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /rpc: %d", resp.StatusCode)
	}
	status, _ := post(t, srv.URL, `{"jsonrpc":"2.0","method":"sys.echo","params":["`+strings.Repeat("x", MaxBody)+`"],"id":1}`)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", status)
	}
	status, got := post(t, srv.URL, `{"jsonrpc":"2.0","method":"sys.info","id":1}`)
	var info struct {
		Result sys.Info `json:"result"`
	}
	if err := json.Unmarshal([]byte(got), &info); err != nil || status != 200 || len(info.Result.Methods) == 0 {
		t.Errorf("sys.info: %d %s", status, got)
	}
}

// TestPrivileged: sys.clients answers admins only, and looks absent to the
// others.
func TestPrivileged(t *testing.T) {
	r := newRPC(t)
	msg := []byte(`{"jsonrpc":"2.0","method":"sys.clients","id":1}`)
	remote, _ := r.Handle(context.Background(), &service.Caller{Door: "http", Remote: "192.0.2.7:4000", Loopback: true}, msg)
	if !strings.Contains(string(remote), `"code":-32601`) {
		t.Errorf("caller without admin: %s", remote)
	}
	local, _ := r.Handle(context.Background(), &service.Caller{Door: "http", Loopback: true, Admin: true}, msg)
	if !strings.Contains(string(local), `"result":{"clients":[],"closed":[]}`) {
		t.Errorf("admin caller: %s", local)
	}
}

// TestRefuse: every call of a message gets the refusal, notifications get
// nothing, and the tally counts both.
func TestRefuse(t *testing.T) {
	r := newRPC(t)
	tests := []struct {
		msg, want string
		tally     Tally
	}{
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":7}`,
			`{"jsonrpc":"2.0","error":{"code":-32008,"message":"busy","data":{"name":"BUSY"}},"id":7}`, Tally{Calls: 1, Errors: 1}},
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2]}`, ``, Tally{Calls: 1, Errors: 1}},
		{`[{"jsonrpc":"2.0","method":"a","id":"x"},{"jsonrpc":"2.0","method":"b"},{"id":2}]`,
			`[{"jsonrpc":"2.0","error":{"code":-32008,"message":"busy","data":{"name":"BUSY"}},"id":"x"},` +
				`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":2}]`,
			Tally{Calls: 3, Errors: 3}},
		{`{`, `{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: not valid JSON"},"id":null}`, Tally{Calls: 1, Errors: 1}},
	}
	for _, tt := range tests {
		got, tally := r.Refuse(nil, []byte(tt.msg), wire.CodeBusy, "busy")
		if string(got) != tt.want || tally != tt.tally {
			t.Errorf("Refuse(%s)\n got %s %+v\nwant %s %+v", tt.msg, got, tally, tt.want, tt.tally)
		}
	}
}

// TestObserve: every answered call is reported once, with its method and
// code; unknown methods are reported without a method.
func TestObserve(t *testing.T) {
	r := newRPC(t)
	type obs struct {
		method string
		code   wire.Code
	}
	var got []obs
	r.Observe = func(m *service.Method, code wire.Code, _ time.Duration) {
		name := "<nil>"
		if m != nil {
			name = m.Name
		}
		got = append(got, obs{name, code})
	}
	msg := `[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":2},` +
		`{"jsonrpc":"2.0","method":"nope","id":3},{"jsonrpc":"2.0","method":"math.mul","params":["x"],"id":4}]`
	_, tally := r.Handle(context.Background(), &service.Caller{}, []byte(msg))
	want := []obs{{"math.add", 0}, {"math.div", wire.CodeDivisionByZero}, {"<nil>", wire.CodeUnknownMethod}, {"math.mul", wire.CodeBadPayload}}
	if !slices.Equal(got, want) || tally != (Tally{Calls: 4, Errors: 3}) {
		t.Errorf("observed %v, tally %+v; want %v and 4 calls, 3 errors", got, tally, want)
	}
}

// TestMemberNamesCaseSensitive: a call's member names are JSON-RPC's,
// case for case. encoding/json matches them without case, and
// {"jsonrpC":"2.0","Method":""} went unanswered as a notification (found
// by FuzzHandle).
func TestMemberNamesCaseSensitive(t *testing.T) {
	r := newRPC(t)
	for _, tt := range []struct{ msg, want string }{
		{`{"jsonrpC":"2.0","Method":""}`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":null}`},
		{`{"jsonrpc":"2.0","Method":"math.add","params":[1,2],"id":1}`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"method\" must be a string"},"id":1}`},
		{`{"JSONRPC":"2.0","method":"math.add","params":[1,2],"id":1}`, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":1}`},
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"ID":1}`, ``}, // no "id": a notification
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1,"Id":2}`, `{"jsonrpc":"2.0","result":3,"id":1}`},
	} {
		out, _ := r.Handle(context.Background(), &service.Caller{}, []byte(tt.msg))
		if got := strings.TrimSpace(string(out)); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.msg, got, tt.want)
		}
	}
}

// FuzzHandle: any message gets either no answer (notifications) or valid
// JSON, and never a panic; HandleInline, when it takes a message, answers
// it as Handle does.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"math.div","params":[7,2],"id":1}`,
		`[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"x"}]`,
		`{"jsonrpc":"2.0","method":"sys.echo","params":["a"],"id":"z"}`,
		`{"jsonrpc":"2.0","method":"math.add","params":{"a":1},"id":null}`,
		`[]`, `[1,2]`, `{`, `null`, `"x"`,
		`{"jsonrpC":"2.0","Method":""}`,
	} {
		f.Add([]byte(s))
	}
	r := newRPC(f)
	caller := &service.Caller{Door: "http", Loopback: true, Admin: true}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if _, _, ok := r.HandleInline(context.Background(), caller, msg); ok {
			checkInline(t, r, msg, true) // the same answer as Handle's
		}
		out, _ := r.Handle(context.Background(), caller, msg)
		if out != nil && !json.Valid(out) {
			t.Fatalf("invalid JSON answer %q to %q", out, msg)
		}
		if out == nil && !bytes.Contains(msg, []byte("method")) {
			t.Fatalf("no answer to %q, which cannot be a notification", msg)
		}
	})
}

// TestInline: only a single call to an inline method may run on a door's
// reader, and its answer is Handle's; anything else goes to a goroutine.
func TestInline(t *testing.T) {
	reg := service.NewRegistry()
	slow := service.Method{Name: "test.slow", Handler: func(_ context.Context, _ service.Request, dst []byte) ([]byte, error) { return dst, nil }}
	if err := reg.Register(append(calc.Methods(), slow)...); err != nil {
		t.Fatal(err)
	}
	r := NewRPC(reg, 0)
	for _, tt := range []struct {
		msg  string
		want bool
	}{
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`, true},
		{` {"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":"x"} `, true},
		{`{"jsonrpc":"2.0","method":"math.add","params":[1],"id":2}`, true}, // answered: invalid params
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2]}`, true},      // a notification
		{`{"jsonrpc":"1.0","method":"math.add","params":[1,2],"id":1}`, false},
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":{}}`, false},
		{`{"jsonrpc":"2.0","method":"test.slow","id":1}`, false},
		{`{"jsonrpc":"2.0","method":"no.such","id":1}`, false},
		{`[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}]`, false},
		{`{"jsonrpc":"2.0","method":`, false},
		{``, false},
	} {
		checkInline(t, r, []byte(tt.msg), tt.want)
	}
}

// checkInline checks that HandleInline takes msg or not as want says, and
// that when it does, it answers as Handle does.
func checkInline(t *testing.T, r *RPC, msg []byte, want bool) {
	t.Helper()
	caller := &service.Caller{Door: "ws", Loopback: true}
	out, tally, ok := r.HandleInline(context.Background(), caller, msg)
	if ok != want {
		t.Errorf("HandleInline(%s) took it: %v, want %v", msg, ok, want)
	}
	if !ok {
		return
	}
	wantOut, wantTally := r.Handle(context.Background(), caller, msg)
	if !bytes.Equal(out, wantOut) || tally != wantTally {
		t.Errorf("HandleInline(%s) = %s %+v; Handle gives %s %+v", msg, out, tally, wantOut, wantTally)
	}
}

// allocated returns the bytes allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHugeMessagesCostLittle: a 1 MiB batch of tiny elements, and a call
// whose params are a 1 MiB array, are refused after a scan, before they
// are decoded: each costs a small multiple of its size, not ~70 MiB of
// raw messages as before.
func TestHugeMessagesCostLittle(t *testing.T) {
	r := newRPC(t)
	ones := strings.Repeat("1,", 512<<10) + "1"
	for _, tt := range []struct {
		name, msg, want string
	}{
		{"batch", "[" + ones + "]", "batch over 1000 calls"},
		{"params", `{"jsonrpc":"2.0","method":"math.add","params":[` + ones + `],"id":1}`, "more than 2 params"},
		{"params of a method without a limit", `{"jsonrpc":"2.0","method":"sys.info","params":[` + ones + `],"id":1}`, "more than 16 params"},
	} {
		msg := []byte(tt.msg)
		var out []byte
		n := allocated(func() { out, _ = r.Handle(context.Background(), &service.Caller{}, msg) })
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: %.200s, want %q", tt.name, out, tt.want)
		}
		if n > 4*uint64(len(msg)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte message", tt.name, n, len(msg))
		}
	}
}

// fakeTap is a Tap that watches every call when watch is set, and
// records what it is given.
type fakeTap struct {
	watch bool
	asked int
	calls []TapCall
}

func (f *fakeTap) Watching(*service.Caller, string) (bool, bool) { f.asked++; return f.watch, f.watch }
func (f *fakeTap) Watched(_ *service.Caller, c *TapCall)         { f.calls = append(f.calls, *c) }

// TestMonitorTap: the engine asks the Tap about every call and gives it
// the watched ones, with their frames: each call as it came, and its
// response as it goes out, alone or as one element of the batch's answer,
// byte for byte (encoded once, for both); a notification has none. What
// goes out is what it would be unwatched, on every path (Handle,
// HandleInline, Refuse).
func TestMonitorTap(t *testing.T) {
	ctx := context.Background()
	caller := &service.Caller{ID: 3, Door: "ws"}
	type path func(r *RPC, msg []byte) []byte
	handle := func(r *RPC, msg []byte) []byte { out, _ := r.Handle(ctx, caller, msg); return out }
	inline := func(r *RPC, msg []byte) []byte {
		out, _, ok := r.HandleInline(ctx, caller, msg)
		if !ok {
			t.Fatalf("%s was not inline", msg)
		}
		return out
	}
	refuse := func(r *RPC, msg []byte) []byte { out, _ := r.Refuse(caller, msg, wire.CodeBusy, "busy"); return out }
	for _, tt := range []struct {
		msg   string
		path  path
		calls []string // the requests as the Tap sees them
	}{
		{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`, handle, []string{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`}},
		{` {"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":"a<b"} `, inline, []string{`{"jsonrpc":"2.0","method":"math.div","params":[1,0],"id":"a<b"}`}},
		{`[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}, {"jsonrpc":"2.0","method":"no<such","id":"x"},
		   {"jsonrpc":"2.0","method":"math.div","params":[1,0]}, {"jsonrpc":"2.0","method":"sys.describe","params":["math.add"],"id":null}]`, handle,
			[]string{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`, `{"jsonrpc":"2.0","method":"no<such","id":"x"}`,
				`{"jsonrpc":"2.0","method":"math.div","params":[1,0]}`, `{"jsonrpc":"2.0","method":"sys.describe","params":["math.add"],"id":null}`}},
		{`[{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1},{"jsonrpc":"2.0","method":"math.sub","params":[1,2]}]`, refuse,
			[]string{`{"jsonrpc":"2.0","method":"math.add","params":[1,2],"id":1}`, `{"jsonrpc":"2.0","method":"math.sub","params":[1,2]}`}},
	} {
		r := newRPC(t)
		want := tt.path(r, []byte(tt.msg))
		unwatched := &fakeTap{}
		r.Tap = unwatched
		if out := tt.path(r, []byte(tt.msg)); !bytes.Equal(out, want) || unwatched.asked != len(tt.calls) || len(unwatched.calls) != 0 {
			t.Errorf("%s unwatched: %s, asked %d times, given %d calls; want %s, asked %d times, given none", tt.msg, out, unwatched.asked,
				len(unwatched.calls), want, len(tt.calls))
		}
		tap := &fakeTap{watch: true}
		r.Tap = tap
		out := tt.path(r, []byte(tt.msg))
		if !bytes.Equal(out, want) {
			t.Errorf("%s watched: %s, want %s", tt.msg, out, want)
		}
		if len(tap.calls) != len(tt.calls) {
			t.Fatalf("%s: the Tap was given %d calls, want %d", tt.msg, len(tap.calls), len(tt.calls))
		}
		var answers [][]byte
		for i, c := range tap.calls {
			if string(c.Request) != tt.calls[i] {
				t.Errorf("call %d: request %s, want %s", i, c.Request, tt.calls[i])
			}
			if c.Answer != nil {
				answers = append(answers, c.Answer)
			} else if strings.Contains(tt.calls[i], `"id"`) {
				t.Errorf("call %d (%s): no answer", i, c.Request)
			}
		}
		if joined := bytes.Join(answers, []byte(",")); !bytes.Equal(out, joined) && !bytes.Equal(out, append(append([]byte("["), joined...), ']')) {
			t.Errorf("%s: the answers shown\n%s\nare not the answer sent\n%s", tt.msg, joined, out)
		}
	}
}
