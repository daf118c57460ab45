package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/natsembed"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
)

// repoRoot is the repository, from this package's directory.
const repoRoot = "../.."

// need skips a test that needs a program this machine lacks, or fails it
// in CI, which installs everything.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI lacks %s", what)
	}
	t.Skipf("needs %s", what)
}

// child is a process of another program that a test starts, kills and
// starts again.
type child struct {
	t    *testing.T
	name string
	args []string
	cmd  *exec.Cmd
	logs *nexotest.SyncBuffer
}

func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	c := &child{t: t, name: name, args: args}
	c.start()
	t.Cleanup(func() {
		if c.cmd == nil {
			return
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s on SIGTERM: %v, want a clean exit\n%s", name, err, c.logs)
			}
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			t.Errorf("%s did not stop on SIGTERM\n%s", name, c.logs)
		}
	})
	return c
}

func (c *child) start() {
	c.t.Helper()
	c.logs = &nexotest.SyncBuffer{}
	c.cmd = exec.Command(c.args[0], c.args[1:]...)
	c.cmd.Dir = repoRoot
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
}

// kill ends the process with SIGKILL: no goodbye, no drain.
func (c *child) kill() {
	c.t.Helper()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.cmd = nil
}

// TestPolyglot: one gateway with its embedded NATS, and greet.go (a Go
// worker), greet.js (a Node worker) and greet.py (a Python HTTP JSON-RPC
// service behind `nexo worker --upstream`), each a real process. Each is
// called on the native door, /rpc, /ws and the CLI, described with its
// schema and what serves it, refuses bad params with -32602, and, killed,
// is UNAVAILABLE at once while the others go on, until it is started
// again. Behind the same worker, a fake upstream answers too slowly,
// garbage, and too much: TIMEOUT, clear errors, and the worker stays up.
func TestPolyglot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs Node and Python")
	}
	_, errNode := exec.LookPath("node")
	need(t, "node", errNode == nil)
	_, errPy := exec.LookPath("python3")
	need(t, "python3", errPy == nil)
	_, errMods := os.Stat(filepath.Join(repoRoot, "clients/js/node_modules/nats"))
	need(t, "clients/js/node_modules (npm ci in clients/js)", errMods == nil)

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/nexo", "./examples/greet-go")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	nexoBin, greetBin := filepath.Join(bin, "nexo"), filepath.Join(bin, "greet-go")

	doors := serveDoors(t, 5, nil, "--nats-embedded", "127.0.0.1:0", "--name", "gw")
	natsURL := "nats://" + doors["nats"]
	pyAddr := nexotest.FreeAddr(t)
	pyURL := "http://" + pyAddr + "/rpc"
	fake := startFakeUpstream(t)

	goWorker := startChild(t, "greet-go", greetBin, "--nats", natsURL)
	nodeWorker := startChild(t, "greet-js", "node", "examples/greet-js/worker.js", "--nats", natsURL)
	python := startChild(t, "greet-py", "python3", "examples/greet-py/service.py", "--addr", pyAddr)
	waitListening(t, pyAddr, python)
	upWorker := startChild(t, "nexo worker --upstream", nexoBin, "worker", "--nats", natsURL,
		"--upstream", pyURL, "--upstream", fake, "--upstream-check", "100ms")

	c, err := client.Dial(context.Background(), doors["native"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	methods := []string{"greet.go", "greet.js", "greet.py"}
	for _, m := range methods {
		waitAnswer(t, c, m)
	}

	t.Run("every door", func(t *testing.T) {
		for _, m := range methods {
			want := `{"greeting":"Hello, Ann!"}`
			if got, err := nativeCall(c, m, `{"name":"Ann"}`, 5*time.Second); err != nil || !sameJSON(got, want) {
				t.Errorf("%s on the native door: %s, %v", m, got, err)
			}
			if got := rpcCall(t, doors["web"], m, `{"name":"Ann"}`); !sameJSON(got, `{"result":`+want+`}`) {
				t.Errorf("%s on /rpc: %s", m, got)
			}
			if got := wsCall(t, doors["web"], m, `{"name":"Ann"}`); !sameJSON(got, `{"result":`+want+`}`) {
				t.Errorf("%s on /ws: %s", m, got)
			}
			if out, errOut, err := run(nil, "call", "--addr", doors["native"], m, "name=Ann"); err != nil || !strings.Contains(out, "Hello, Ann!") {
				t.Errorf("nexo call %s name=Ann: %q %q %v", m, out, errOut, err)
			}
			for _, bad := range []string{`{"name":""}`, `{"name":"` + strings.Repeat("x", 65) + `"}`, `{"name":7}`, `{}`} {
				got := rpcCall(t, doors["web"], m, bad)
				var r struct {
					Error struct{ Code int } `json:"error"`
				}
				if json.Unmarshal([]byte(got), &r) != nil || r.Error.Code != -32602 {
					t.Errorf("%s %s on /rpc: %s, want -32602", m, bad, got)
				}
			}
		}
	})

	t.Run("one catalog", func(t *testing.T) {
		got := rpcCall(t, doors["web"], "sys.describe", "")
		var cat struct {
			Result struct {
				Methods []struct {
					Name     string          `json:"name"`
					Params   json.RawMessage `json:"params"`
					ServedBy []string        `json:"served_by"`
				} `json:"methods"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(got), &cat); err != nil {
			t.Fatalf("sys.describe: %v: %s", err, got)
		}
		want := map[string]string{"greet.go": "go worker", "greet.js": "node worker", "greet.py": "upstream " + pyURL, "math.add": "in-process"}
		for _, d := range cat.Result.Methods {
			if w, ok := want[d.Name]; ok {
				if strings.Join(d.ServedBy, ",") != w {
					t.Errorf("%s served by %v, want %s", d.Name, d.ServedBy, w)
				}
				if d.Name != "math.add" && !strings.Contains(string(d.Params), `"maxLength":64`) {
					t.Errorf("%s's params schema lacks the 64-character bound: %s", d.Name, d.Params)
				}
				delete(want, d.Name)
			}
		}
		if len(want) > 0 {
			t.Errorf("sys.describe lacks %v", want)
		}
		out, _, err := run(nil, "clients", "--cluster", "--addr", doors["native"])
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{`\s+node\s+\S+\s+greet\.js\s`, `\s+go\s+\S+\s+greet\.go\s`, `(?m)^` + regexp.QuoteMeta(pyURL) + `\s+\w+\s+up\s+1\s`,
			`greet\.js\s+node worker`, `greet\.py\s+upstream ` + regexp.QuoteMeta(pyURL)} {
			if !regexp.MustCompile(w).MatchString(out) {
				t.Errorf("nexo clients --cluster lacks %s:\n%s", w, out)
			}
		}
	})

	t.Run("an upstream's failures", func(t *testing.T) {
		// The server's answer, not the client's own deadline: a raw
		// request with a DEADLINE of 300 ms, waited for longer.
		raw, _ := nexotest.Hello(t, doors["native"], "raw")
		raw.Send(wire.AppendRequestDeadline(nil, 1, 300, "fake.slow", []byte(`{}`)))
		raw.ExpectError(1, wire.CodeTimeout) // from the gateway or the worker, whichever sees the deadline first
		if _, err := nativeCall(c, "fake.garbage", `{}`, 5*time.Second); !errors.Is(err, wire.CodeInternal) || !strings.Contains(err.Error(), "not a JSON-RPC 2.0 response") {
			t.Errorf("an upstream answering garbage: %v", err)
		}
		if _, err := nativeCall(c, "fake.huge", `{}`, 5*time.Second); !errors.Is(err, wire.CodeInternal) || !strings.Contains(err.Error(), "answered more than") {
			t.Errorf("an upstream answering too much: %v", err)
		}
		if _, err := nativeCall(c, "fake.mine", `{}`, 5*time.Second); !errors.Is(err, wire.Code(1001)) || !strings.Contains(err.Error(), "not yours") {
			t.Errorf("an application error: %v, want code 1001 and its message", err)
		}
		if got := rpcCall(t, doors["web"], "fake.mine", "{}"); !sameJSON(got, `{"error":{"code":1001,"message":"not yours","data":{"name":"CODE_1001"}}}`) {
			t.Errorf("an application error on /rpc: %s", got)
		}
		if got, err := nativeCall(c, "greet.py", `{"name":"Ann"}`, 5*time.Second); err != nil || upWorker.cmd.ProcessState != nil {
			t.Errorf("the worker after them: %s %v, exited: %v", got, err, upWorker.cmd.ProcessState)
		}
	})

	t.Run("kill and restart", func(t *testing.T) {
		for _, k := range []struct {
			method string
			proc   *child
		}{
			{"greet.go", goWorker}, {"greet.js", nodeWorker}, {"greet.py", python}, {"greet.py", upWorker},
		} {
			k.proc.kill()
			// Not after the 10 s deadline: at once, or, when the request
			// reached NATS before NATS saw the worker's connection close,
			// after one retry (--nats-retry-after, 1 s) finds nobody.
			start := time.Now()
			if _, err := nativeCall(c, k.method, `{"name":"Ann"}`, 10*time.Second); !errors.Is(err, wire.CodeUnavailable) {
				t.Errorf("%s with %s killed: %v, want UNAVAILABLE", k.method, k.proc.name, err)
			} else if d := time.Since(start); d > 2500*time.Millisecond {
				t.Errorf("%s with %s killed: UNAVAILABLE after %v, not at once", k.method, k.proc.name, d)
			}
			for _, other := range methods {
				if other == k.method {
					continue
				}
				if _, err := nativeCall(c, other, `{"name":"Ann"}`, 2*time.Second); err != nil {
					t.Errorf("%s with %s killed: %v", other, k.proc.name, err)
				}
			}
			k.proc.start()
			if k.proc == python {
				waitListening(t, pyAddr, python)
			}
			waitAnswer(t, c, k.method)
		}
	})
}

// startFakeUpstream serves an OpenRPC document of four methods that fail:
// fake.slow answers after 3 s, fake.garbage with HTML, fake.huge with 2
// MiB (over the max frame), fake.mine with the application code 1001.
func startFakeUpstream(t *testing.T) string {
	t.Helper()
	var doc atomic.Pointer[string]
	d := `{"openrpc":"1.3.2","info":{"title":"fake","version":"1"},"methods":[` +
		`{"name":"fake.slow","params":[]},{"name":"fake.garbage","params":[]},{"name":"fake.huge","params":[]},{"name":"fake.mine","params":[]}]}`
	doc.Store(&d)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) }) // a slow call ends with the test
	return fakeServer(t, &doc, func(w http.ResponseWriter, method string) {
		switch method {
		case "fake.slow":
			select {
			case <-time.After(3 * time.Second):
			case <-stop:
			}
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":1}`)
		case "fake.garbage":
			fmt.Fprint(w, `<html>Bad Gateway</html>`)
		case "fake.huge":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":"%s"}`, strings.Repeat("x", 2<<20))
		case "fake.mine":
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"error":{"code":1001,"message":"not yours"}}`)
		}
	})
}

// waitListening waits for a child to listen on addr.
func waitListening(t *testing.T, addr string, c *child) {
	t.Helper()
	nexotest.WaitFor(t, 20*time.Second, c.name+" to listen on "+addr, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// waitAnswer waits for a method to answer through the gateway.
func waitAnswer(t *testing.T, c *client.Client, method string) {
	t.Helper()
	var last error
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if _, last = nativeCall(c, method, `{"name":"Ann"}`, 2*time.Second); last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered: %v", method, last)
}

func nativeCall(c *client.Client, method, params string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := c.Call(ctx, method, []byte(params))
	return string(out), err
}

// rpcCall calls a method on POST /rpc and returns the response without
// its jsonrpc and id members.
func rpcCall(t *testing.T, web, method, params string) string {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"` + method + `"`
	if params != "" {
		body += `,"params":` + params
	}
	resp, err := http.Post("http://"+web+"/rpc", "application/json", strings.NewReader(body+"}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return withoutEnvelope(b)
}

// wsCall calls a method over /ws, past the welcome.
func wsCall(t *testing.T, web, method, params string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+web+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","id":7,"method":"`+method+`","params":`+params+`}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"id":7`)) {
			return withoutEnvelope(b)
		}
	}
}

func withoutEnvelope(b []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return string(b)
	}
	delete(m, "jsonrpc")
	delete(m, "id")
	out, _ := json.Marshal(m)
	return string(out)
}

// sameJSON reports whether two JSON texts say the same.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// TestUpstreamChanges: an upstream's document is read again at every
// check, so a method it adds is callable and one it drops is gone
// (UNKNOWN_METHOD, not UNAVAILABLE): in-process (serve --upstream), and
// through a gateway from a worker (which tells the gateways what it
// dropped).
func TestUpstreamChanges(t *testing.T) {
	var doc atomic.Pointer[string]
	one := `{"openrpc":"1.3.2","methods":[{"name":"up.one","params":[]}]}`
	two := `{"openrpc":"1.3.2","methods":[{"name":"up.two","params":[]}]}`
	doc.Store(&one)
	url := docServer(t, &doc)

	ns, err := natsembed.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	worker := inProcess(t, 2, nil, "nexo worker stopped", "worker", "--nats", ns.URL(), "--upstream", url, "--upstream-check", "50ms",
		"--health-addr", "127.0.0.1:0")
	gw := serve(t, nil, "--nats", ns.URL(), "--services", "none")
	lone := serve(t, nil, "--upstream", url, "--upstream-check", "50ms")
	serve(t, nil, "--nats", ns.URL(), "--services", "none", "--name", "gw-up", "--upstream", url)

	// The cluster view shows both upstreams: the worker's, and the one a
	// gateway serves in-process.
	out, _, err := run(nil, "clients", "--cluster", "--addr", gw["native"])
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`(?m)^` + regexp.QuoteMeta(url) + `\s+gw-up\s+up\s+1\s`, `(?m)^` + regexp.QuoteMeta(url) + `\s+\w{22}\s+up\s+1\s`} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Errorf("nexo clients --cluster lacks %s:\n%s", w, out)
		}
	}

	for _, doors := range []map[string]string{lone, gw} {
		c, err := client.Dial(context.Background(), doors["native"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitAnswer(t, c, "up.one")
	}
	// served is the count of a method in the worker's /metrics.
	served := func(method string) int {
		m := regexp.MustCompile(`(?m)^nexo_worker_requests_total\{method="` + regexp.QuoteMeta(method) + `"\} (\d+)$`).
			FindStringSubmatch(get(t, "http://"+worker["health"]+"/metrics"))
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := served("up.one") // the gateway's calls went to the worker
	if before < 1 {
		t.Errorf("the worker counts %d calls of up.one, want at least 1", before)
	}
	doc.Store(&two)
	for name, doors := range map[string]map[string]string{"serve --upstream": lone, "a gateway": gw} {
		c, err := client.Dial(context.Background(), doors["native"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitAnswer(t, c, "up.two")
		var last error
		nexotest.WaitFor(t, 10*time.Second, name+": up.one gone", func() bool {
			_, last = nativeCall(c, "up.one", "", 2*time.Second)
			return errors.Is(last, wire.CodeUnknownMethod)
		})
	}
	// The service that served up.one is gone; its count stays.
	if n := served("up.one"); n < before {
		t.Errorf("after the upstream's change the worker counts %d calls of up.one, had %d", n, before)
	}
	if n := served("up.two"); n < 1 {
		t.Errorf("the worker counts %d calls of up.two, want at least 1", n)
	}
}

// docServer is an upstream whose OpenRPC document is *doc, and whose
// methods answer their own name.
func docServer(t *testing.T, doc *atomic.Pointer[string]) string {
	t.Helper()
	return fakeServer(t, doc, func(w http.ResponseWriter, method string) {
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":%q}`, method)
	})
}

// fakeServer is an HTTP JSON-RPC server on loopback whose rpc.discover
// answers *doc, and whose other methods answer as answer writes.
func fakeServer(t *testing.T, doc *atomic.Pointer[string], answer func(w http.ResponseWriter, method string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Method string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if req.Method == "rpc.discover" {
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":%s}`, *doc.Load())
			return
		}
		answer(w, req.Method)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/rpc"
}

// TestUpstreamCollisions: an upstream's method whose name is served here
// already is left out (another nexo as an upstream describes sys.* too);
// an upstream with nothing left to serve refuses the start-up.
func TestUpstreamCollisions(t *testing.T) {
	var doc atomic.Pointer[string]
	both := `{"openrpc":"1.3.2","methods":[{"name":"sys.echo","params":[]},{"name":"up.one","params":[]}]}`
	doc.Store(&both)
	url := docServer(t, &doc)
	doors := serve(t, nil, "--upstream", url)
	c, err := client.Dial(context.Background(), doors["native"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := nativeCall(c, "up.one", "", 2*time.Second); err != nil || got != `"up.one"` {
		t.Errorf("up.one: %s %v", got, err)
	}
	if got, err := nativeCall(c, "sys.echo", "hi", 2*time.Second); err != nil || got != "hi" {
		t.Errorf("sys.echo stays in-process: %s %v", got, err)
	}
	only := `{"openrpc":"1.3.2","methods":[{"name":"sys.echo","params":[]}]}`
	doc.Store(&only)
	_, _, err = run(nil, "serve", "--native-addr", "127.0.0.1:0", "--legacy-addr", "", "--web-addr", "", "--admin-addr", "", "--upstream", url)
	if err == nil || !strings.Contains(err.Error(), "every method it describes is served here already") || !strings.Contains(err.Error(), "sys.echo") {
		t.Errorf("an upstream of nothing but taken names: %v", err)
	}
}
