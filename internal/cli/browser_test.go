package cli

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nexo-project/nexo/client"
)

// chromium finds the browser: $NEXO_CHROMIUM, or chromium on the PATH. On
// CI (CI set) a missing browser fails the test: .ci/run installs it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NEXO_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on CI: .ci/run must install it")
	}
	t.Skip("no chromium here (apt-get install chromium); set NEXO_CHROMIUM to use another")
	return ""
}

// poll waits until a JavaScript expression is true in the page.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(10*time.Second))(ctx, t)
		return chromedp.Void{}, err
	}
}

// text reads an element's text.
func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// browserContext starts headless chromium for a test.
func browserContext(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root on CI
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancel(); cancelCtx(); cancelAlloc() })
	return ctx
}

// TestBrowserReconnect: the GUI shows that the server went away and
// reconnects by itself when it is back on the same address.
func TestBrowserReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := browserContext(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	webAddr := ln.Addr().String()
	ln.Close()
	start := func() (stop func()) {
		sctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{}, 4)
		done := make(chan error, 1)
		m := &Main{Stdout: io.Discard, Stderr: io.Discard, Listening: func(string, string) { ready <- struct{}{} }}
		go func() {
			done <- m.Run(sctx, []string{"serve", "--native-addr", "", "--legacy-addr", "", "--admin-addr", "", "--web-addr", webAddr, "--drain-timeout", "2s"})
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("serve: %v", err)
		}
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
	}
	stop := start()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+webAddr+"/"), poll(`document.body.dataset.state === "connected"`)); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := chromedp.Do(ctx, poll(`document.body.dataset.state === "disconnected"`)); err != nil {
		t.Fatalf("the GUI does not show the server gone: %v", err)
	}
	stop = start()
	defer stop()
	if err := chromedp.Do(ctx, poll(`document.body.dataset.state === "connected" && document.querySelector("#whoami").textContent.includes("client #1")`)); err != nil {
		t.Fatalf("the GUI did not reconnect to the restarted server: %v", err)
	}
}

// TestBrowser drives the GUI of a real `nexo serve` in headless chromium:
// the calculator, division by zero, auto mode, a native client appearing in
// the live list and leaving it, a kick from the admin view, and a
// screenshot (saved to $NEXO_SCREENSHOT when set, for the README).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := browserContext(t)
	addrs := serve(t, nil, "--heartbeat", "1s")
	url := "http://" + addrs["web"] + "/"

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			state, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#conn")))
			errText, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#calc-error")))
			t.Fatalf("%s: %v (connection %q, calculator error %q)", name, err, state, errText)
		}
	}

	step("open the GUI",
		chromedp.Navigate(url),
		poll(`document.body.dataset.state === "connected" && document.body.classList.contains("admin")`),
	)

	step("7 / 2 in the calculator",
		chromedp.SetValue(chromedp.CSS("#a"), "7"),
		chromedp.SetValue(chromedp.CSS("#op"), "math.div"),
		chromedp.SetValue(chromedp.CSS("#b"), "2"),
		chromedp.Click(chromedp.CSS("#compute")),
		poll(`document.querySelector("#result").textContent !== ""`),
	)
	if result := text(ctx, t, "#result"); result != "3.5" {
		t.Errorf("7 / 2 shows %q, want 3.5", result)
	}

	step("division by zero",
		chromedp.SetValue(chromedp.CSS("#b"), "0"),
		chromedp.Click(chromedp.CSS("#compute")),
		poll(`document.querySelector("#calc-error").textContent !== ""`),
	)
	if errText := text(ctx, t, "#calc-error"); !bytes.Contains([]byte(errText), []byte("division by zero")) {
		t.Errorf("1 / 0 shows %q, want division by zero", errText)
	}
	// Integers beyond 2^53 are exact, and a quotient beyond it has an
	// exponent: the page rounded 9007199254740991 × 3 to
	// 27021597764222972 and showed invented digits for quotients.
	for _, tt := range []struct{ a, op, b, want string }{
		{"9007199254740991", "math.mul", "3", "27021597764222973"},
		{"9223372036854775806", "math.add", "1", "9223372036854775807"},
		{"-9223372036854775808", "math.div", "-1", "9.223372036854776e+18"},
	} {
		step(tt.a+" "+tt.op+" "+tt.b,
			chromedp.SetValue(chromedp.CSS("#a"), tt.a),
			chromedp.SetValue(chromedp.CSS("#op"), tt.op),
			chromedp.SetValue(chromedp.CSS("#b"), tt.b),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#result").textContent = ""`),
			chromedp.Click(chromedp.CSS("#compute")),
			poll(`document.querySelector("#result").textContent !== ""`),
		)
		if result := text(ctx, t, "#result"); result != tt.want {
			t.Errorf("%s %s %s shows %q, want %q", tt.a, tt.op, tt.b, result, tt.want)
		}
	}
	step("overflow is explained",
		chromedp.SetValue(chromedp.CSS("#a"), "9223372036854775807"),
		chromedp.SetValue(chromedp.CSS("#op"), "math.add"),
		chromedp.SetValue(chromedp.CSS("#b"), "1"),
		chromedp.Click(chromedp.CSS("#compute")),
		poll(`document.querySelector("#calc-error").textContent.includes("overflow")`),
	)
	step("bad input is refused in the page",
		chromedp.SetValue(chromedp.CSS("#a"), "12abc"),
		chromedp.Click(chromedp.CSS("#compute")),
		poll(`document.querySelector("#calc-error").textContent.includes("whole number")`),
		chromedp.SetValue(chromedp.CSS("#a"), "7"),
	)

	// The Services panel: every method of the catalog, a form from its
	// params schema, the result or the error.
	svc := func(method string, fields map[string]string) {
		var actions []chromedp.Action[chromedp.Void]
		actions = append(actions, chromedp.SetValue(chromedp.CSS("#svc-method"), method),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#svc-method").dispatchEvent(new Event("change"))`))
		for name, v := range fields {
			actions = append(actions, chromedp.SetValue(chromedp.CSS("#svc-f-"+name), v))
		}
		actions = append(actions, chromedp.Click(chromedp.CSS("#svc-call")),
			poll(`document.querySelector("#svc-result").textContent !== "" || document.querySelector("#svc-error").textContent !== ""`))
		step("services: "+method, actions...)
	}
	poll1 := func(expr string) { step("the services are listed", poll(expr)) }
	poll1(`[...document.querySelectorAll("#svc-method option")].some((o) => o.value === "sys.describe")`)
	for _, tt := range []struct {
		method string
		fields map[string]string
		result string
		err    string
	}{
		{"math.mul", map[string]string{"a": "9007199254740991", "b": "3"}, "27021597764222973", ""},
		{"math.add", map[string]string{"a": "9223372036854775807", "b": "1"}, "", "overflow"},
		{"sys.echo", map[string]string{"text": "hello"}, `"hello"`, ""},
		{"sys.kick", map[string]string{"id": "999999"}, "false", ""},
	} {
		svc(tt.method, tt.fields)
		if got := text(ctx, t, "#svc-served"); got != "in-process" {
			t.Errorf("services %s: served by %q, want in-process", tt.method, got)
		}
		if got := text(ctx, t, "#svc-result"); got != tt.result {
			t.Errorf("services %s: result %q, want %q", tt.method, got, tt.result)
		}
		if got := text(ctx, t, "#svc-error"); !strings.Contains(got, tt.err) || (tt.err == "" && got != "") {
			t.Errorf("services %s: error %q, want %q", tt.method, got, tt.err)
		}
	}

	step("auto mode",
		chromedp.SetValue(chromedp.CSS("#every"), "0.2"),
		chromedp.Click(chromedp.CSS("#auto-toggle")),
		poll(`document.querySelectorAll("#auto-log li").length >= 3`),
		chromedp.Click(chromedp.CSS("#auto-toggle")),
	)

	// A native client started here appears in the live list, then leaves it.
	c, err := client.Dial(ctx, addrs["native"], &client.Options{Name: "watched-by-browser"})
	if err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`#clients tbody tr[data-id="%d"]`, c.ID())
	step("the native client appears",
		poll(fmt.Sprintf(`(() => { const r = document.querySelector('%s'); return r && r.textContent.includes("watched-by-browser") && r.textContent.includes("native") })()`, row)),
	)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	step("the native client leaves, with its reason",
		poll(fmt.Sprintf(`document.querySelector('%s') === null`, row)),
		poll(fmt.Sprintf(`(() => { const r = document.querySelector('#closed tbody tr[data-id="%d"]'); return r && r.textContent.includes("client goodbye") })()`, c.ID())),
	)

	// The admin view kicks a client.
	victim, err := client.Dial(ctx, addrs["native"], &client.Options{Name: "to-be-kicked"})
	if err != nil {
		t.Fatal(err)
	}
	button := fmt.Sprintf(`button[aria-label="Disconnect client %d"]`, victim.ID())
	step("the admin view shows a disconnect button",
		chromedp.WaitVisible(chromedp.CSS(button)),
		poll(`document.querySelector("#rps-chart .line")?.getTotalLength() > 0`), // two samples at least, for the screenshot
	)
	png1, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 makes a PNG
	if err != nil {
		t.Fatal(err)
	}
	step("no sideways scroll on a 390 px phone",
		chromedp.EmulateViewport(390, 844),
		poll(`document.documentElement.scrollWidth <= 390`),
		chromedp.EmulateViewport(1280, 1000),
	)
	step("your own session has no disconnect button",
		poll(`(() => { const me = [...document.querySelectorAll("#clients tbody tr")].find((r) => r.textContent.includes("(you)")); return me && me.querySelector("button") === null })()`),
	)
	confirm := fmt.Sprintf(`button[aria-label="Confirm disconnect client %d"]`, victim.ID())
	step("a first click asks for confirmation; the client stays",
		chromedp.Click(chromedp.CSS(button)),
		chromedp.WaitVisible(chromedp.CSS(confirm)),
	)
	select {
	case <-victim.Done():
		t.Fatal("one click disconnected the client")
	case <-time.After(300 * time.Millisecond):
	}
	step("kick from the admin view",
		chromedp.Click(chromedp.CSS(confirm)),
		poll(fmt.Sprintf(`(() => { const r = document.querySelector('#closed tbody tr[data-id="%d"]'); return r && r.textContent.includes("kicked") })()`, victim.ID())),
	)
	select {
	case <-victim.Done():
	case <-time.After(5 * time.Second):
		t.Error("the kicked client is still connected")
	}

	if _, err := png.Decode(bytes.NewReader(png1)); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	out := os.Getenv("NEXO_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "gui.png")
	}
	if err := os.WriteFile(out, png1, 0o644); err != nil {
		t.Error(err)
	}
}
