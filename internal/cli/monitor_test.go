package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/wire"
)

// monitorRun runs `nexo monitor` in-process with args until the test ends
// or stop is called, which returns its exit status.
type monitorRun struct {
	stdout, stderr *nexotest.SyncBuffer
	stop           func() int
}

func startMonitorCmd(t *testing.T, stdout interface{ Write([]byte) (int, error) }, args ...string) *monitorRun {
	t.Helper()
	r := &monitorRun{stdout: &nexotest.SyncBuffer{}, stderr: &nexotest.SyncBuffer{}}
	if stdout == nil {
		stdout = r.stdout
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Main{Stdout: stdout, Stderr: r.stderr, Getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- m.Exit(ctx, append([]string{"monitor"}, args...)) }()
	var once sync.Once
	var code int
	r.stop = func() int {
		once.Do(func() {
			cancel()
			code = <-done
		})
		return code
	}
	t.Cleanup(func() { r.stop() })
	return r
}

// TestMonitorCommand: nexo monitor prints the requests of every door as
// they pass, one line each or as JSON; --client and --method filter;
// Ctrl-C (the context's end) exits 0; a non-admin is refused.
func TestMonitorCommand(t *testing.T) {
	addrs := serve(t, nil)
	c, err := client.Dial(context.Background(), addrs["native"], &client.Options{Name: "adder"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := client.Dial(context.Background(), addrs["native"], &client.Options{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx := context.Background()
	// until calls add until the monitor shows one: it may not watch yet.
	until := func(r *monitorRun, what string, shown func(string) bool) {
		t.Helper()
		nexotest.WaitFor(t, 10*time.Second, what, func() bool {
			if _, err := c.Add(ctx, 2, 3); err != nil {
				t.Fatal(err)
			}
			return shown(r.stdout.String())
		})
	}

	t.Run("lines", func(t *testing.T) {
		r := startMonitorCmd(t, nil, "--addr", addrs["native"], "--client", fmt.Sprint(c.ID()))
		until(r, "the monitor's first line", func(out string) bool { return out != "" })
		if _, err := other.Div(ctx, 7, 2); err != nil { // another client: not shown
			t.Fatal(err)
		}
		if _, err := c.Div(ctx, 1, 0); err == nil {
			t.Fatal("1/0 answered")
		}
		nexotest.WaitFor(t, 5*time.Second, "the division", func() bool { return strings.Contains(r.stdout.String(), "math.div") })
		if code := r.stop(); code != 0 {
			t.Errorf("monitor ended with status %d, want 0; stderr %s", code, r.stderr)
		}
		lines := strings.Split(strings.TrimSuffix(r.stdout.String(), "\n"), "\n")
		add := regexp.MustCompile(fmt.Sprintf(`^\d\d:\d\d:\d\d\.\d{6} \[%d native\] math\.add \[2,3\] → 5 \([\d.]+[µnm]?s\)$`, c.ID()))
		for _, l := range lines[:len(lines)-1] {
			if !add.MatchString(l) {
				t.Errorf("line %q, want one like %s", l, add)
			}
		}
		div := regexp.MustCompile(fmt.Sprintf(`^\d\d:\d\d:\d\d\.\d{6} \[%d native\] math\.div \[1,0\] → DIVISION_BY_ZERO: calc: division by zero \([\d.]+[µnm]?s\)$`, c.ID()))
		if last := lines[len(lines)-1]; !div.MatchString(last) {
			t.Errorf("last line %q, want one like %s (the other client's call is not shown)", last, div)
		}
	})

	t.Run("json", func(t *testing.T) {
		r := startMonitorCmd(t, nil, "--addr", addrs["native"], "--method", "math.sub", "--json")
		legacyConn := nexotest.Dial(t, addrs["legacy"])
		nexotest.WaitFor(t, 10*time.Second, "a legacy RESTA", func() bool {
			legacyConn.LegacyLine(legacy.Append(nil, binary.BigEndian, "RESTA", 5, 7))
			return r.stdout.String() != ""
		})
		if _, err := c.Add(ctx, 1, 1); err != nil { // another method: not shown
			t.Fatal(err)
		}
		if _, err := other.Sub(ctx, 10, 3); err != nil {
			t.Fatal(err)
		}
		nexotest.WaitFor(t, 5*time.Second, "the native math.sub", func() bool { return strings.Contains(r.stdout.String(), `"door":"native"`) })
		r.stop()
		lines := strings.Split(strings.TrimSuffix(r.stdout.String(), "\n"), "\n")
		for i, l := range lines {
			var ev status.MonitorEvent
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Method != "math.sub" {
				t.Fatalf("line %q: %v", l, err)
			}
			want := status.MonitorEvent{Door: "legacy", Params: json.RawMessage("[5,7]"), Result: json.RawMessage("-2")}
			if i == len(lines)-1 {
				want = status.MonitorEvent{Door: "native", Client: other.ID(), Params: json.RawMessage("[10,3]"), Result: json.RawMessage("7")}
			}
			if ev.Door != want.Door || string(ev.Params) != string(want.Params) || string(ev.Result) != string(want.Result) || (want.Client != 0 && ev.Client != want.Client) {
				t.Errorf("line %d: %s, want %+v", i, l, want)
			}
		}
	})

	t.Run("hostile", func(t *testing.T) {
		// A client that is no admin names a method with escape sequences
		// (a window title, a cleared screen); the name is repeated in the
		// error's message, which the server does not escape.
		r := startMonitorCmd(t, nil, "--addr", addrs["native"])
		evil := `{"jsonrpc":"2.0","method":"\u001b]0;pwned\u0007\u001b[2Jx\u009b1m\u007f","id":1}`
		nexotest.WaitFor(t, 10*time.Second, "the hostile call", func() bool {
			resp, err := http.Post("http://"+addrs["web"]+"/rpc", "application/json", strings.NewReader(evil))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return strings.Contains(r.stdout.String(), "[0 http]")
		})
		out := r.stdout.String()
		if i := strings.IndexFunc(out, func(c rune) bool { return c != '\n' && unicode.IsControl(c) }); i >= 0 {
			t.Errorf("a control character (%q) reached the terminal: %q", out[i:i+1], out)
		}
		if want := `method not found: \x1b]0;pwned\a\x1b[2Jx\u009b1m\x7f`; !strings.Contains(out, want) {
			t.Errorf("output %q, want the message escaped: %s", out, want)
		}
	})

	t.Run("not admin", func(t *testing.T) {
		addrs := serve(t, nil, "--admin-token", "s3cret")
		_, stderr, err := run(nil, "monitor", "--addr", addrs["native"])
		if err == nil || !strings.Contains(err.Error(), "admins") {
			t.Errorf("monitor without the admin token: %v %s", err, stderr)
		}
		r := startMonitorCmd(t, nil, "--addr", addrs["native"], "--token", "s3cret", "--json")
		victim := nexotest.Dial(t, addrs["native"])
		victim.Hello(wire.Hello{Name: "victim"})
		nexotest.WaitFor(t, 10*time.Second, "the admin's monitor", func() bool {
			victim.Send(wire.AppendRequest(nil, 1, "math.mul", nexotest.Operands(2, 2)))
			victim.Read()
			return strings.Contains(r.stdout.String(), `"method":"math.mul"`)
		})
	})

	if _, _, err := run(nil, "monitor", "--addr", addrs["native"], "extra"); err == nil {
		t.Error("monitor with an argument ran")
	}
}

// gate is a stdout whose writes wait while it is held.
type gate struct {
	mu  sync.Mutex
	out nexotest.SyncBuffer
}

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(p)
}

// TestMonitorCommandLoses: a monitor whose output is held up loses events
// rather than hold up its connection, and says how many on stderr; every
// request is either printed or counted lost.
func TestMonitorCommandLoses(t *testing.T) {
	addrs := serve(t, nil)
	g := &gate{}
	r := startMonitorCmd(t, g, "--addr", addrs["native"], "--json")
	busy := nexotest.Dial(t, addrs["native"])
	busy.Hello(wire.Hello{Name: "busy"})
	nexotest.WaitFor(t, 10*time.Second, "the monitor to watch", func() bool {
		busy.Send(wire.AppendRequest(nil, 1, "math.add", nexotest.Operands(0, 0)))
		busy.Read()
		return g.out.String() != ""
	})
	g.mu.Lock() // the printer stops at its next line
	const n = 5000
	var burst []byte
	for i := 1; i <= n; i++ {
		burst = wire.AppendRequest(burst, uint32(i), "math.add", nexotest.Operands(int64(i), 0))
	}
	busy.Send(burst)
	for range n {
		if f := busy.Read(); f.Type != wire.TypeResponse {
			t.Fatalf("%v", f.Type)
		}
	}
	g.mu.Unlock()
	lost := regexp.MustCompile(`(?m)^lost (\d+) events$`)
	count := func() (shown, dropped int) {
		for _, l := range strings.Split(g.out.String(), "\n") {
			if strings.Contains(l, `"params":[`) && !strings.Contains(l, `"params":[0,0]`) {
				shown++
			}
		}
		for _, m := range lost.FindAllStringSubmatch(r.stderr.String(), -1) {
			var k int
			fmt.Sscan(m[1], &k)
			dropped += k
		}
		return shown, dropped
	}
	nexotest.WaitFor(t, 10*time.Second, "every request printed or counted lost", func() bool {
		s, d := count()
		return s+d >= n
	})
	s, d := count()
	t.Logf("%d printed, %d lost", s, d)
	if d == 0 || s+d != n {
		t.Errorf("%d printed + %d lost, want %d with some lost; stderr:\n%s", s, d, n, r.stderr)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// TestMonitorLinePrintable: every string of an event that a client may
// have chosen reaches the terminal with its control characters (C0, DEL,
// C1) and the bytes that are not UTF-8 escaped as %q escapes them; the
// rest, é and → included, as it is.
func TestMonitorLinePrintable(t *testing.T) {
	evil := "\x1b]0;pwned\a\x1b[2J\u009b31m\x7f\xff\n"
	shown := `\x1b]0;pwned\a\x1b[2J\u009b31m\x7f\xff\n`
	for _, tt := range []struct {
		name string
		ev   status.MonitorEvent
		want string
	}{
		{"door and method", status.MonitorEvent{Door: evil, Method: evil, ParamsLen: 1},
			"[0 " + shown + "] " + shown + " <1 bytes> → <0 bytes>"},
		{"error", status.MonitorEvent{Door: "ws", Method: "m", Error: &status.MonitorError{Name: evil, Message: "é " + evil}},
			"[0 ws] m → " + shown + ": é " + shown},
		{"params and result", status.MonitorEvent{Door: "ws", Method: "m", Params: json.RawMessage("[\"\u0085\x7f\"]"), Result: json.RawMessage("\"\u009b\"")},
			`[0 ws] m ["\u0085\x7f"] → "\u009b"`},
		{"not JSON", status.MonitorEvent{Door: "ws", Method: "m", Params: json.RawMessage(evil)},
			"[0 ws] m " + shown + " → <0 bytes>"},
	} {
		line := string(appendMonitorLine(nil, tt.ev))
		if !strings.Contains(line, tt.want) || strings.ContainsFunc(line, unicode.IsControl) {
			t.Errorf("%s: %q, want %q in it and no control character", tt.name, line, tt.want)
		}
	}
}

// TestMonitorQueueKeepsNotices: a notice of the server's losses that
// arrives when the printer's queue is full adds its count to the losses
// told, instead of counting as one lost event: the server had told of
// thousands, and the command said a few.
func TestMonitorQueueKeepsNotices(t *testing.T) {
	q := &monitorQueue{events: make(chan []byte, 1)}
	q.onEvent("monitor", []byte(`{"client":1,"method":"math.add"}`))
	q.onEvent("monitor", []byte(`{"client":1,"method":"math.add"}`)) // no room: 1
	q.onEvent("monitor", []byte(`{"time":"2026-12-03T00:00:00Z","lost":3875}`))
	if got := q.dropped.Load(); got != 1+3875 {
		t.Fatalf("dropped %d, want %d", got, 1+3875)
	}
}
