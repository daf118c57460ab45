package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// greetDoc is an OpenRPC document as a Python or Node service would write
// it: greet by name, idempotent; add by position; fail for errors.
const greetDoc = `{"openrpc":"1.3.2","info":{"title":"t","version":"1"},"methods":[
 {"name":"rpc.discover","params":[],"result":{"name":"doc","schema":{}}},
 {"name":"greet","summary":"greets","paramStructure":"by-name",
  "params":[{"name":"name","required":true,"schema":{"type":"string","minLength":1}}],
  "result":{"name":"result","schema":{"type":"object"}},
  "examples":[{"name":"e","params":[{"name":"name","value":"Ann"}],"result":{"name":"result","value":{"greeting":"Hello, Ann!"}}},
              {"name":"f","description":"fails with BAD_PAYLOAD","params":[{"name":"name","value":""}]}],
  "x-idempotent":true},
 {"name":"add","paramStructure":"by-position","params":[{"name":"a","required":true,"schema":{"type":"integer"}},{"name":"b","schema":{"type":"integer"}}],
  "errors":[{"code":-32007,"message":"OVERFLOW"},{"code":1001,"message":"mine"}]},
 {"name":"fail","params":[]}
]}`

// fake is an upstream on a real loopback socket whose answers a test
// chooses.
type fake struct {
	t      testing.TB
	ln     net.Listener
	srv    *http.Server
	doc    atomic.Pointer[string]
	answer func(w http.ResponseWriter, method string, params json.RawMessage, h http.Header)
	calls  atomic.Int64
	slow   atomic.Int64 // rpc.discover calls still to answer 200 ms late
}

func newFake(t testing.TB, addr string) *fake {
	t.Helper()
	f := &fake{t: t}
	d := greetDoc
	f.doc.Store(&d)
	f.answer = func(w http.ResponseWriter, _ string, params json.RawMessage, _ http.Header) {
		writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":`+string(params)+`}`)
	}
	f.start(addr)
	return f
}

func (f *fake) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.ln = ln
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil {
			writeJSON(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`)
			return
		}
		if req.Method == "rpc.discover" {
			if f.slow.Add(-1) >= 0 {
				time.Sleep(200 * time.Millisecond)
			}
			writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":`+*f.doc.Load()+`}`)
			return
		}
		f.calls.Add(1)
		f.answer(w, req.Method, req.Params, r.Header)
	})}
	go func() { _ = f.srv.Serve(ln) }()
	f.t.Cleanup(func() { _ = f.srv.Close() })
}

func (f *fake) url() string { return "http://" + f.ln.Addr().String() + "/rpc" }

func writeJSON(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, s)
}

func open(t *testing.T, url string, o Options) *Upstream {
	t.Helper()
	u, err := New(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

func method(t *testing.T, u *Upstream, name string) service.Method {
	t.Helper()
	for _, m := range u.Methods() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no method %s among %d", name, len(u.Methods()))
	return service.Method{}
}

func call(m service.Method, params string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := m.Handler(ctx, service.Request{Payload: []byte(params)}, nil)
	return string(out), err
}

func TestDescribes(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	u := open(t, f.url(), Options{})
	if n := len(u.Methods()); n != 3 {
		t.Fatalf("%d methods, want greet, add and fail (rpc.discover is the protocol's own)", n)
	}
	greet := method(t, u, "greet")
	if !greet.Idempotent || greet.Summary != "greets" || greet.JSON == nil {
		t.Errorf("greet: idempotent %v, summary %q, JSON %v", greet.Idempotent, greet.Summary, greet.JSON != nil)
	}
	want := `{"type":"object","properties":{"name":{"type":"string","minLength":1}},"additionalProperties":false,"required":["name"]}`
	if string(greet.Desc.Params) != want {
		t.Errorf("greet params schema\n got %s\nwant %s", greet.Desc.Params, want)
	}
	if ex := greet.Desc.Examples; len(ex) != 2 || string(ex[0].Params) != `{"name":"Ann"}` || string(ex[0].Result) != `{"greeting":"Hello, Ann!"}` || ex[1].Error != "BAD_PAYLOAD" {
		t.Errorf("greet examples: %+v", ex)
	}
	if sb := greet.Describe().ServedBy; len(sb) != 1 || sb[0] != "upstream "+f.url() {
		t.Errorf("served_by %v", sb)
	}
	add := method(t, u, "add")
	if add.Idempotent {
		t.Error("add is idempotent without x-idempotent")
	}
	want = `{"type":"array","prefixItems":[{"title":"a","type":"integer"},{"title":"b","type":"integer"}],"items":false,"minItems":1}`
	if string(add.Desc.Params) != want {
		t.Errorf("add params schema\n got %s\nwant %s", add.Desc.Params, want)
	}
	if errs := add.Describe().Errors; strings.Join(errs, ",") != "OVERFLOW,CODE_1001" {
		t.Errorf("add errors %v", errs)
	}
}

func TestCalls(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	var deadline atomic.Int64
	f.answer = func(w http.ResponseWriter, method string, params json.RawMessage, h http.Header) {
		deadline.Store(0)
		if ms, err := strconv.ParseInt(h.Get(DeadlineHeader), 10, 64); err == nil {
			deadline.Store(ms)
		}
		switch method {
		case "greet":
			var p struct{ Name string }
			_ = json.Unmarshal(params, &p)
			writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":{"greeting":"Hello, `+p.Name+`!"}}`)
		case "add":
			writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":null}`)
		}
	}
	u := open(t, f.url(), Options{})
	start := time.Now()
	got, err := call(method(t, u, "greet"), `{"name":"Ann"}`, 3*time.Second)
	if err != nil || got != `{"greeting":"Hello, Ann!"}` {
		t.Fatalf("greet: %q, %v", got, err)
	}
	if d := time.UnixMilli(deadline.Load()); d.Before(start.Add(2*time.Second)) || d.After(start.Add(4*time.Second)) {
		t.Errorf("Nexo-Deadline %v, want the call's, about 3 s after %v", d, start)
	}
	if got, err := call(method(t, u, "add"), `[1,2]`, time.Second); err != nil || got != "null" {
		t.Errorf("a null result: %q, %v", got, err)
	}
	for _, bad := range []string{`"text"`, `{"name":`, `12`} {
		if _, err := call(method(t, u, "greet"), bad, time.Second); !errors.Is(err, wire.CodeBadPayload) {
			t.Errorf("params %s: %v, want BAD_PAYLOAD before any call", bad, err)
		}
	}
	if f.calls.Load() != 2 {
		t.Errorf("%d calls reached the upstream, want 2", f.calls.Load())
	}
}

func TestErrors(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	var body atomic.Pointer[string]
	var status atomic.Int64
	f.answer = func(w http.ResponseWriter, _ string, _ json.RawMessage, _ http.Header) {
		if s := status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		_, _ = io.WriteString(w, *body.Load())
	}
	u := open(t, f.url(), Options{MaxBody: 1000})
	fail := method(t, u, "fail")
	for _, c := range []struct {
		status int
		body   string
		code   wire.Code
		msg    string
	}{
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}`, wire.CodeUnknownMethod, "no such method"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"name: too short"}}`, wire.CodeBadPayload, "name: too short"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":-32006,"message":"by zero"}}`, wire.CodeDivisionByZero, "by zero"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":1001,"message":"no such user"}}`, 1001, "no such user"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":65535,"message":"last"}}`, 65535, "last"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}`, wire.CodeInternal, "error -32603: boom"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":42,"message":"odd"}}`, wire.CodeInternal, "error 42: odd"},
		{0, `{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"closes"}}`, wire.CodeInternal, "error -32001: closes"},
		{0, `<html>hello</html>`, wire.CodeInternal, "not a JSON-RPC 2.0 response"},
		{0, `{"jsonrpc":"1.0","id":1,"result":1}`, wire.CodeInternal, "not a JSON-RPC 2.0 response"},
		{0, `{"jsonrpc":"2.0","id":1}`, wire.CodeInternal, "not a JSON-RPC 2.0 response"},
		{0, `{"jsonrpc":"2.0","id":1,"result":"` + strings.Repeat("x", 1000) + `"}`, wire.CodeInternal, "answered more than 1000 bytes"},
		{500, `oops`, wire.CodeInternal, "answered HTTP 500 Internal Server Error"},
		{503, `{"jsonrpc":"2.0","id":1,"error":{"code":-32013,"message":"busy elsewhere"}}`, wire.CodeUnavailable, "busy elsewhere"},
	} {
		body.Store(&c.body)
		status.Store(int64(c.status))
		_, err := call(fail, ``, time.Second)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != c.code || !strings.Contains(we.Msg, c.msg) {
			t.Errorf("%d %s: %v, want %v with %q", c.status, c.body, err, c.code, c.msg)
			continue
		}
		if got := service.ErrorMessage(service.CodeOf(err), err); got != we.Msg {
			t.Errorf("%s: a client is told %q, want %q", c.body, got, we.Msg)
		}
	}
	if h := u.Health(); h.Errors != h.Calls || h.Calls != 14 || h.ErrorCodes["INTERNAL"] != 8 {
		t.Errorf("health %+v", h)
	}
}

func TestTimeout(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	release := make(chan struct{})
	defer close(release)
	f.answer = func(w http.ResponseWriter, _ string, _ json.RawMessage, _ http.Header) {
		<-release
		writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":1}`)
	}
	u := open(t, f.url(), Options{})
	_, err := call(method(t, u, "greet"), `{"name":"a"}`, 200*time.Millisecond)
	if !errors.Is(err, wire.CodeTimeout) {
		t.Fatalf("a slow upstream: %v, want TIMEOUT", err)
	}
	if !u.Health().Up {
		t.Error("a slow method marked the upstream down")
	}
}

// TestKeepAlive: calls reuse connections, and a burst of more calls than
// the pool holds waits for its connections instead of opening more.
func TestKeepAlive(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	u := open(t, f.url(), Options{Conns: 4})
	greet := method(t, u, "greet")
	for i := range 200 {
		if _, err := call(greet, `{"name":"a"}`, time.Second); err != nil {
			t.Fatal(i, err)
		}
	}
	if n := u.Health().Connections; n != 1 {
		t.Errorf("200 calls one after another opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if _, err := call(greet, `{"name":"a"}`, 5*time.Second); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := u.Health().Connections; n > 4 {
		t.Errorf("16 callers of 50 calls each opened %d connections, want at most the pool's 4", n)
	}
}

// TestDownAndBack: an upstream that stops gets its methods answered
// UNAVAILABLE at once, and they come back by themselves when it returns.
func TestDownAndBack(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	addr := f.ln.Addr().String()
	u := open(t, f.url(), Options{Check: 50 * time.Millisecond})
	greet := method(t, u, "greet")
	if _, err := call(greet, `{"name":"a"}`, time.Second); err != nil {
		t.Fatal(err)
	}
	_ = f.srv.Close()
	_, err := call(greet, `{"name":"a"}`, 10*time.Second)
	if !errors.Is(err, wire.CodeUnavailable) {
		t.Fatalf("an upstream that is gone: %v, want UNAVAILABLE", err)
	}
	waitFor(t, "the health check to see it down", func() bool { return !u.Health().Up })
	if _, err := call(greet, `{"name":"a"}`, 10*time.Second); !errors.Is(err, wire.CodeUnavailable) || !strings.Contains(err.Error(), "is down") {
		t.Fatalf("while down: %v", err)
	}
	f.start(addr)
	waitFor(t, "the health check to see it back", func() bool { return u.Health().Up })
	if got, err := call(greet, `{"name":"a"}`, time.Second); err != nil || got != `{"name":"a"}` {
		t.Fatalf("back: %q, %v", got, err)
	}
}

// TestRetries: a call that fails on the network is sent once more only
// when the method is idempotent.
func TestRetries(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	var drop atomic.Bool
	f.answer = func(w http.ResponseWriter, _ string, params json.RawMessage, _ http.Header) {
		if drop.Swap(false) {
			c, _, _ := w.(http.Hijacker).Hijack()
			_ = c.Close()
			return
		}
		writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":`+string(params)+`}`)
	}
	u := open(t, f.url(), Options{Check: time.Hour})
	drop.Store(true)
	if got, err := call(method(t, u, "greet"), `{"name":"a"}`, time.Second); err != nil || got != `{"name":"a"}` {
		t.Errorf("idempotent greet after a dropped connection: %q, %v", got, err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("idempotent: the upstream saw %d calls, want 2", n)
	}
	drop.Store(true)
	if _, err := call(method(t, u, "add"), `[1,2]`, time.Second); !errors.Is(err, wire.CodeUnavailable) {
		t.Errorf("add after a dropped connection: %v, want UNAVAILABLE, not a retry", err)
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("not idempotent: the upstream saw %d calls in all, want 3", n)
	}
}

// TestRediscover: a new document is read at the next check; Changed is
// told the methods now.
func TestRediscover(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	changed := make(chan []service.Method, 1)
	u := open(t, f.url(), Options{Check: 20 * time.Millisecond, Changed: func(_ *Upstream, ms []service.Method) { changed <- ms }})
	doc := `{"openrpc":"1.3.2","methods":[{"name":"hello","params":[]}]}`
	f.doc.Store(&doc)
	select {
	case ms := <-changed:
		if len(ms) != 1 || ms[0].Name != "hello" {
			t.Errorf("changed to %d methods", len(ms))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the new document was not read")
	}
	if ms := u.Methods(); len(ms) != 1 || ms[0].Name != "hello" {
		t.Errorf("methods now: %v", ms)
	}
}

func TestStartErrors(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	for _, c := range []struct{ url, doc, want string }{
		{"ftp://host/x", "", "want an http:// or https:// URL"},
		{"127.0.0.1:8000/rpc", "", "want an http:// or https:// URL"},
		{"http://user:pw@127.0.0.1:1/", "", "credentials in the URL"},
		{"http://127.0.0.1:1/rpc", "", "connection refused"},
		{"", `[]`, "not an OpenRPC document"},
		{"", `{"methods":[]}`, `no "openrpc" version`},
		{"", `{"openrpc":"2.0.0","methods":[]}`, `nexo reads 1.x`},
		{"", `{"openrpc":"1.3.2","methods":[]}`, "describes no method"},
		{"", `{"openrpc":"1.3.2","methods":[{"name":"a b"}]}`, `methods[0] "a b"`},
		{"", `{"openrpc":"1.3.2","methods":[{"$ref":"#/x"}]}`, "methods[0]: a $ref method"},
		{"", `{"openrpc":"1.3.2","methods":[{"name":"x","params":[]},{"name":"x","params":[]}]}`, `methods[1] "x": described twice`},
		{"", `{"openrpc":"1.3.2","methods":[{"name":"x","paramStructure":"sideways","params":[]}]}`, `paramStructure "sideways"`},
		{"", `{"openrpc":"1.3.2","methods":[{"name":"x","params":[{"name":"p","schema":1}]}]}`, `params[0] "p": the schema is neither`},
		{"", `{"openrpc":"1.3.2","methods":[{"name":"x","params":[{"name":"p"},{"name":"p"}]}]}`, `params[1]: want a name of its own`},
		{"", `{"openrpc":"1.3.2","methods":[{"name":"x","paramStructure":"by-position","params":[{"name":"p"},{"name":"q","required":true}]}]}`, `required after an optional`},
	} {
		url := c.url
		if url == "" {
			url = f.url()
			f.doc.Store(&c.doc)
		}
		u, err := New(context.Background(), url, Options{})
		if err == nil {
			u.Close()
			t.Errorf("%s %s: started", url, c.doc)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s:\n got %v\nwant it to say %q", url, c.doc, err, c.want)
		}
	}
}

// TestDiscoverRefused: a server that answers rpc.discover with an error is
// named as such.
func TestDiscoverRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	_, err = New(context.Background(), "http://"+ln.Addr().String()+"/", Options{})
	if err == nil || !strings.Contains(err.Error(), "must answer rpc.discover with an OpenRPC document") {
		t.Fatalf("got %v", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("timed out waiting for " + what)
		}
	}
}

func FuzzReadDocument(f *testing.F) {
	f.Add([]byte(greetDoc))
	f.Add([]byte(`{"openrpc":"1.0.0","methods":[{"name":"a","paramStructure":"by-position","params":[{"name":"x","schema":true}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := readDocument(b)
		if err != nil {
			return
		}
		for _, d := range ds {
			if wire.CheckMethod(d.name) != nil {
				t.Fatalf("method %q read", d.name)
			}
			if len(d.desc.Params) > 0 && !json.Valid(d.desc.Params) {
				t.Fatalf("params schema not JSON: %s", d.desc.Params)
			}
			for _, e := range d.desc.Examples {
				if !json.Valid(e.Params) {
					t.Fatalf("example params not JSON: %s", e.Params)
				}
			}
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":{"a":1}}`))
	f.Add(500, []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}`))
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		r, err := readResponse(&http.Response{StatusCode: status, Status: strconv.Itoa(status)}, b)
		if err != nil {
			return
		}
		if (r.Result == nil) == (r.Error == nil) {
			t.Fatal("read a response with both or neither of result and error")
		}
		if r.Result != nil && !json.Valid(r.Result) {
			t.Fatalf("result not JSON: %s", r.Result)
		}
	})
}

// BenchmarkCall is one call through the upstream path against a Go
// JSON-RPC server on loopback: what nexo adds to an upstream's own time,
// HTTP on both sides included.
func BenchmarkCall(b *testing.B) {
	f := newFake(b, "127.0.0.1:0")
	u, err := New(context.Background(), f.url(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	name := []byte(`"greet"`)
	params := []byte(`{"name":"Ann"}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var dst []byte
		for pb.Next() {
			var err error
			if dst, err = u.Call(context.Background(), name, true, params, dst[:0]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestSlowHealthCheck: one health check that times out does not mark a
// busy upstream down; an upstream that keeps timing out is down.
func TestSlowHealthCheck(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	u := open(t, f.url(), Options{Check: 10 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond})
	wentDown := func(within time.Duration) bool {
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if u.Health().Downs > 0 {
				return true
			}
		}
		return false
	}
	f.slow.Store(1)
	if wentDown(500 * time.Millisecond) {
		t.Error("one slow health check marked the upstream down")
	}
	f.slow.Store(1 << 30)
	if !wentDown(2 * time.Second) {
		t.Error("slow health checks in a row left the upstream up")
	}
	f.slow.Store(0)
}

// TestProbeNotQueued: health checks have a connection of their own: with
// every pooled connection busy on slow calls, the upstream stays up.
func TestProbeNotQueued(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	release := make(chan struct{})
	f.answer = func(w http.ResponseWriter, _ string, _ json.RawMessage, _ http.Header) {
		<-release
		writeJSON(w, `{"jsonrpc":"2.0","id":1,"result":1}`)
	}
	u := open(t, f.url(), Options{Conns: 2, Check: 10 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for range 6 { // 2 on the wire, 4 waiting for a connection
		wg.Go(func() { _, _ = call(method(t, u, "greet"), `{"name":"a"}`, 5*time.Second) })
	}
	waitFor(t, "the pool to fill", func() bool { return f.calls.Load() == 2 })
	time.Sleep(500 * time.Millisecond) // health checks every 10 ms, each allowed 100 ms
	if h := u.Health(); h.Downs != 0 || !h.Up {
		t.Errorf("a full pool made the health check fail: %+v", h)
	}
	close(release)
	wg.Wait()
}

// TestSameMethodsNewText: a document whose text changes but whose methods
// do not (a date in info) changes nothing.
func TestSameMethodsNewText(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	var changed atomic.Int64
	u := open(t, f.url(), Options{Check: 10 * time.Millisecond, Changed: func(*Upstream, []service.Method) { changed.Add(1) }})
	for i := range 5 {
		doc := strings.Replace(greetDoc, `"version":"1"`, `"version":"1.`+strconv.Itoa(i)+`"`, 1)
		f.doc.Store(&doc)
		time.Sleep(30 * time.Millisecond)
	}
	if n := changed.Load(); n != 0 {
		t.Errorf("Changed told %d times of documents with the same methods", n)
	}
	doc := strings.Replace(greetDoc, `"summary":"greets"`, `"summary":"greets you"`, 1)
	f.doc.Store(&doc)
	waitFor(t, "a changed summary to be read", func() bool { return changed.Load() == 1 })
	if s := method(t, u, "greet").Summary; s != "greets you" {
		t.Errorf("summary %q", s)
	}
}

// TestURLShown: a key in the URL's query never shows: not in served_by,
// errors, health or metrics; calls still carry it.
func TestURLShown(t *testing.T) {
	f := newFake(t, "127.0.0.1:0")
	f.answer = func(w http.ResponseWriter, _ string, _ json.RawMessage, _ http.Header) {
		writeJSON(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}`)
	}
	inner := f.url() + "?key=s3cret"
	u := open(t, inner, Options{})
	greet := method(t, u, "greet")
	_, err := call(greet, `{"name":"a"}`, time.Second)
	shown := []string{u.URL(), u.Health().URL, strings.Join(greet.Describe().ServedBy, ","), fmt.Sprint(err)}
	for _, s := range shown {
		if strings.Contains(s, "s3cret") || !strings.Contains(s, f.url()) {
			t.Errorf("shown: %q", s)
		}
	}
}

// TestNoRedirects: a redirect is not followed, so a call's params go
// nowhere but the upstream's URL.
func TestNoRedirects(t *testing.T) {
	elsewhere := newFake(t, "127.0.0.1:0")
	f := newFake(t, "127.0.0.1:0")
	f.answer = func(w http.ResponseWriter, _ string, _ json.RawMessage, _ http.Header) {
		w.Header().Set("Location", elsewhere.url())
		w.WriteHeader(http.StatusTemporaryRedirect)
	}
	u := open(t, f.url(), Options{})
	_, err := call(method(t, u, "greet"), `{"name":"a"}`, time.Second)
	if !errors.Is(err, wire.CodeInternal) || !strings.Contains(err.Error(), "307") {
		t.Errorf("a redirect: %v, want INTERNAL naming HTTP 307", err)
	}
	if n := elsewhere.calls.Load(); n != 0 {
		t.Errorf("the redirect was followed: %d calls elsewhere", n)
	}
}
