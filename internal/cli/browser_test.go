package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/wire"
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

// inPage does actions in the page, or fails t saying what it was doing.
func inPage(ctx context.Context, t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// evaluate evaluates a JavaScript expression in the page.
func evaluate[T any](ctx context.Context, t *testing.T, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluate %.80q: %v", expr, err)
	}
	return v
}

// jsName names an element for the keyboard tests: #id, or the tag and its
// aria-label; "body" when nothing has the focus.
const jsName = `((el) => !el || el === document.body ? "body" : el.id ? "#" + el.id :
	el.tagName.toLowerCase() + (el.getAttribute("aria-label") ? "[" + el.getAttribute("aria-label") + "]" : ""))`

// jsFocusable lists, in page order, the elements that Tab should reach:
// every visible, enabled control and anything else made focusable.
const jsFocusable = `[...document.querySelectorAll("a[href], area[href], button, input, select, textarea, iframe, summary, [tabindex], [contenteditable]")]
	.filter((el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0 && getComputedStyle(el).visibility === "visible")
	.map(` + jsName + `)`

// jsUnreachableScrollers lists the boxes that scroll but that Tab cannot
// reach: neither they nor anything in them takes the focus, so the arrow
// keys cannot scroll them.
const jsUnreachableScrollers = `[...document.querySelectorAll("body *")].filter((el) => {
	const cs = getComputedStyle(el);
	const scrolls = (/auto|scroll/.test(cs.overflowX) && el.scrollWidth > el.clientWidth + 1) || (/auto|scroll/.test(cs.overflowY) && el.scrollHeight > el.clientHeight + 1);
	return scrolls && el.tabIndex < 0 && ![...el.querySelectorAll("*")].some((c) => c.tabIndex >= 0 && !c.disabled && c.getClientRects().length > 0);
}).map(` + jsName + `)`

// jsFocusRing describes the focused element's focus ring: whether it
// matches :focus-visible, its outline, and the contrast of the outline's
// colour with the background around the element (WCAG asks 3:1).
const jsFocusRing = `(() => {
	const el = document.activeElement, cs = getComputedStyle(el);
	const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
	const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 })
		.reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
	let bg = "rgb(255, 255, 255)";
	for (let p = el.parentElement; p; p = p.parentElement) {
		const c = getComputedStyle(p).backgroundColor, a = rgb(c);
		if (a.length === 3 || (a.length === 4 && a[3] > 0)) { bg = c; break; }
	}
	const [l1, l2] = [lum(rgb(cs.outlineColor)), lum(rgb(bg))].sort((x, y) => y - x);
	return { name: ` + jsName + `(el), outline: cs.outlineStyle, width: parseFloat(cs.outlineWidth) || 0,
		visible: el.matches(":focus-visible"), contrast: (l1 + 0.05) / (l2 + 0.05) };
})()`

// jsChartProblems lists what is wrong with the charts' labels: no time
// axis, a label clipped by the chart's box, two labels overlapping, a
// label stretched (an SVG scaled unevenly) or too small to read.
const jsChartProblems = `(() => {
	const problems = [];
	for (const svg of document.querySelectorAll("svg.chart")) {
		const box = svg.getBoundingClientRect();
		const texts = [...svg.querySelectorAll("text")];
		const words = texts.map((t) => t.textContent);
		if (!words.includes("now") || !words.some((w) => /\d+ (min|s)$/.test(w))) problems.push(svg.id + ": no time axis; its labels are " + JSON.stringify(words));
		const rects = texts.map((t) => t.getBoundingClientRect());
		const at = (r) => "x " + r.left.toFixed(1) + "–" + r.right.toFixed(1) + ", y " + r.top.toFixed(1) + "–" + r.bottom.toFixed(1);
		texts.forEach((t, i) => {
			const r = rects[i], w = JSON.stringify(t.textContent);
			if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
				problems.push(svg.id + ": label " + w + " is clipped: it is at " + at(r) + ", the chart at " + at(box));
			const m = t.getScreenCTM(), px = parseFloat(getComputedStyle(t).fontSize) * Math.abs(m.d);
			if (px < 11) problems.push(svg.id + ": label " + w + " is " + px.toFixed(1) + " px high");
			if (Math.abs(Math.abs(m.a) - Math.abs(m.d)) > 0.01) problems.push(svg.id + ": label " + w + " is stretched " + (m.a / m.d).toFixed(2) + " times");
			for (let j = 0; j < i; j++) {
				const q = rects[j];
				if (r.left < q.right && q.left < r.right && r.top < q.bottom && q.top < r.bottom) problems.push(svg.id + ": labels " + JSON.stringify(words[j]) + " and " + w + " overlap");
			}
		});
	}
	return problems;
})()`

// axeScript reads axe-core, which npm ci installs in clients/js (a
// devDependency pinned by its package-lock.json). On CI a missing copy
// fails the test; elsewhere the check is skipped.
func axeScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "clients", "js", "node_modules", "axe-core", "axe.min.js"))
	if errors.Is(err, fs.ErrNotExist) {
		if os.Getenv("CI") != "" {
			t.Fatalf("no axe-core on CI: .ci/run must run npm ci in clients/js (%v)", err)
		}
		t.Skipf("no axe-core here: run npm ci in clients/js to check accessibility (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkAxe runs axe-core on the page as it is and fails t with every
// serious or critical violation; lesser ones are logged.
func checkAxe(ctx context.Context, t *testing.T) {
	t.Helper()
	script := axeScript(t)
	type violation struct {
		ID, Impact, Help string
		Targets          []string
	}
	inPage(ctx, t, "load axe-core", chromedp.Evaluate[chromedp.Void](script))
	vs := evaluate[[]violation](ctx, t, `axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations.map((v) => ({
		id: v.id, impact: v.impact || "", help: v.help, targets: v.nodes.map((n) => n.target.flat().join(" ")) })))`, chromedp.EvalAwaitPromise)
	var bad strings.Builder
	for _, v := range vs {
		line := fmt.Sprintf("%s (%s): %s\n\t%s", v.ID, v.Impact, v.Help, strings.Join(v.Targets, "\n\t"))
		if v.Impact == "serious" || v.Impact == "critical" {
			bad.WriteString("\n" + line)
		} else {
			t.Logf("axe, %s", line)
		}
	}
	if bad.Len() > 0 {
		t.Errorf("axe-core finds serious or critical violations:%s", bad.String())
	}
}

// TestBrowserAccessibility checks the GUI of a real `nexo serve` at a
// phone's width (390 px) and a desktop's (1280 px): the charts have a time
// axis and readable labels; Tab reaches every control in page order, each
// with a visible focus, and leaves the page again (no trap); Enter and
// Space work; Disconnect works by keyboard, its confirmation included,
// while the client list updates every second; axe-core finds no serious or
// critical violation. The server has an admin token, so the page first
// logs in by keyboard.
func TestBrowserAccessibility(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := browserContext(t)
	const token = "keyboard-admin-token"
	addrs := serve(t, map[string]string{"NEXO_ADMIN_TOKEN": token}, "--heartbeat", "1s")
	url := "http://" + addrs["web"] + "/"
	dial := func(t *testing.T, name string) *client.Client {
		t.Helper()
		c, err := client.Dial(ctx, addrs["native"], &client.Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const admin = `document.body.dataset.state === "connected" && document.body.classList.contains("admin")`

	inPage(ctx, t, "open the GUI, not yet admin",
		chromedp.Navigate(url),
		poll(`document.body.dataset.state === "connected" && !document.body.classList.contains("admin")`))
	t.Run("axe before login", func(t *testing.T) { checkAxe(ctx, t) })
	inPage(ctx, t, "log in by keyboard: Tab to the token, type it, Enter",
		chromedp.KeyEvent(kb.Tab),
		poll(`document.activeElement.id === "token"`),
		chromedp.KeyEvent(token+kb.Enter),
		poll(admin))

	for _, size := range []struct {
		name string
		w, h int64
	}{{"phone", 390, 844}, {"desktop", 1280, 1000}} {
		t.Run(fmt.Sprintf("%s %d px", size.name, size.w), func(t *testing.T) {
			inPage(ctx, t, "reload at this width (the token stays for the tab)",
				chromedp.EmulateViewport(size.w, size.h),
				chromedp.Navigate(url),
				poll(admin),
				// The services form is drawn once sys.describe answers: the
				// page's tab order is only whole after that.
				poll(`document.querySelectorAll("#svc-method option").length > 0`))
			victim := dial(t, "kicked-by-keyboard")
			disconnect := fmt.Sprintf("button[Disconnect client %d]", victim.ID())
			inPage(ctx, t, "the victim has a Disconnect button",
				poll(fmt.Sprintf(`[...document.querySelectorAll("button")].some((b) => %s(b) === %q)`, jsName, disconnect)))

			t.Run("charts", func(t *testing.T) {
				inPage(ctx, t, "the charts have labels", poll(`document.querySelectorAll("#rps-chart text, #p99-chart text").length > 0`))
				if problems := evaluate[[]string](ctx, t, jsChartProblems); len(problems) > 0 {
					t.Errorf("the charts' labels:\n%s", strings.Join(problems, "\n"))
				}
			})

			t.Run("tab order", func(t *testing.T) {
				want := evaluate[[]string](ctx, t, jsFocusable)
				for _, c := range []string{"#a", "#op", "#b", "#compute", "#svc-method", "#svc-call", "#every", "#auto-toggle", disconnect} {
					if !slices.Contains(want, c) {
						t.Errorf("%s is not focusable; these are: %q", c, want)
					}
				}
				if n := evaluate[int](ctx, t, `document.querySelectorAll("[tabindex]:not([tabindex='0']):not([tabindex='-1'])").length`); n > 0 {
					t.Errorf("%d elements have a positive tabindex, which breaks the page order", n)
				}
				if boxes := evaluate[[]string](ctx, t, jsUnreachableScrollers); len(boxes) > 0 {
					t.Errorf("these boxes scroll but Tab cannot reach them: %q", boxes)
				}
				type stop struct {
					Name     string
					Outline  string
					Width    float64
					Visible  bool
					Contrast float64
				}
				var got []stop
				for range len(want) + 3 {
					inPage(ctx, t, "press Tab", chromedp.KeyEvent(kb.Tab))
					got = append(got, evaluate[stop](ctx, t, jsFocusRing))
				}
				var names []string
				for _, s := range got {
					names = append(names, s.Name)
				}
				if len(want) == 0 || !slices.Equal(names[:len(want)], want) {
					t.Fatalf("Tab goes through\n\t%q\nwant the page order\n\t%q", names, want)
				}
				for _, s := range got[:len(want)] {
					if !s.Visible || s.Outline == "none" || s.Width < 2 || s.Contrast < 3 {
						t.Errorf("%s has no visible focus: :focus-visible %v, outline %s %.1f px, contrast %.1f:1 with the background", s.Name, s.Visible, s.Outline, s.Width, s.Contrast)
					}
				}
				// Past the last control the focus leaves the page (to the
				// browser, body here) and comes back to the first: no trap.
				if after := names[len(want):]; !slices.Contains(after, want[0]) {
					t.Errorf("after the last control, Tab goes to %q, not back to %s: a keyboard trap", after, want[0])
				}
			})

			t.Run("enter and space", func(t *testing.T) {
				inPage(ctx, t, "Enter in a number submits the calculator",
					chromedp.SetValue(chromedp.CSS("#a"), "6"),
					chromedp.SetValue(chromedp.CSS("#op"), "math.mul"),
					chromedp.SetValue(chromedp.CSS("#b"), "7"),
					chromedp.Evaluate[chromedp.Void](`document.querySelector("#result").textContent = ""`),
					chromedp.Focus(chromedp.CSS("#b")),
					chromedp.KeyEvent(kb.Enter),
					poll(`document.querySelector("#result").textContent === "42"`))
				inPage(ctx, t, "Space on Compute",
					chromedp.Evaluate[chromedp.Void](`document.querySelector("#result").textContent = ""`),
					chromedp.Focus(chromedp.CSS("#compute")),
					chromedp.KeyEvent(" "),
					poll(`document.querySelector("#result").textContent === "42"`))
				inPage(ctx, t, "Space starts the automatic client, Enter stops it",
					chromedp.SetValue(chromedp.CSS("#every"), "60"),
					chromedp.Focus(chromedp.CSS("#auto-toggle")),
					chromedp.KeyEvent(" "),
					poll(`document.querySelector("#auto-toggle").getAttribute("aria-pressed") === "true" && document.querySelectorAll("#auto-log li").length > 0`),
					chromedp.KeyEvent(kb.Enter),
					poll(`document.querySelector("#auto-toggle").getAttribute("aria-pressed") === "false"`))
			})

			t.Run("axe", func(t *testing.T) { checkAxe(ctx, t) })

			t.Run("disconnect by keyboard", func(t *testing.T) {
				for i := 0; evaluate[string](ctx, t, jsName+`(document.activeElement)`) != disconnect; i++ {
					if i > 100 {
						t.Fatalf("Tab never reaches %s", disconnect)
					}
					inPage(ctx, t, "press Tab", chromedp.KeyEvent(kb.Tab))
				}
				confirm := fmt.Sprintf("button[Confirm disconnect client %d]", victim.ID())
				inPage(ctx, t, "Enter asks for confirmation",
					chromedp.KeyEvent(kb.Enter),
					poll(fmt.Sprintf(`%s(document.activeElement) === %q`, jsName, confirm)))
				// The list is redrawn every second, and at once for a new
				// client: the focus must stay on the armed button.
				bystander := dial(t, "bystander")
				inPage(ctx, t, "a new client appears",
					poll(fmt.Sprintf(`document.querySelector('#clients tbody tr[data-id="%d"]') !== null`, bystander.ID())))
				if got := evaluate[string](ctx, t, jsName+`(document.activeElement)`); got != confirm {
					t.Fatalf("after the list's update the focus is on %s, not %s", got, confirm)
				}
				select {
				case <-victim.Done():
					t.Fatal("one key press disconnected the client")
				default:
				}
				inPage(ctx, t, "Space confirms",
					chromedp.KeyEvent(" "),
					poll(fmt.Sprintf(`(() => { const r = document.querySelector('#closed tbody tr[data-id="%d"]'); return r && r.textContent.includes("kicked") })()`, victim.ID())))
				select {
				case <-victim.Done():
				case <-time.After(5 * time.Second):
					t.Error("the client disconnected by keyboard is still connected")
				}
				inPage(ctx, t, "the page says so, and the focus is not lost",
					poll(fmt.Sprintf(`document.querySelector("#clients-section [role=status]").textContent.includes("client %d disconnected")`, victim.ID())),
					poll(`document.activeElement !== document.body && document.querySelector("#clients-section").contains(document.activeElement)`))
			})
		})
	}
}

// TestBrowserInspector drives the GUI's wire inspector in a real browser:
// an admin picks a client in the list (Inspect, by keyboard) and sees its
// traffic decoded: a native client's REQUEST, RESPONSE and ERROR frames
// field by field, the legacy packets of a little-endian and a big-endian
// client byte by byte in their byte order, a WebSocket client's JSON-RPC
// messages as JSON. The list keeps the last 200; Stop ends the watch.
func TestBrowserInspector(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := browserContext(t)
	addrs := serve(t, nil)
	inPage(ctx, t, "open the GUI as admin",
		chromedp.Navigate("http://"+addrs["web"]+"/"),
		poll(`document.body.dataset.state === "connected" && document.body.classList.contains("admin")`))

	inspect := func(t *testing.T, id uint64) {
		t.Helper()
		btn := fmt.Sprintf(`button[aria-label="Inspect client %d"]`, id)
		inPage(ctx, t, fmt.Sprintf("Inspect client %d by keyboard", id),
			chromedp.WaitVisible(chromedp.CSS(btn)),
			chromedp.Focus(chromedp.CSS(btn)),
			chromedp.KeyEvent(kb.Enter),
			poll(fmt.Sprintf(`document.querySelector("#inspector-status").textContent.includes("inspecting client %d") && document.querySelector('%s').getAttribute("aria-pressed") === "true"`, id, btn)))
	}
	// shown waits for the newest exchange to be of method, and returns
	// its request's or answer's fields: field → [bytes, value].
	shown := func(t *testing.T, method, which string) map[string][2]string {
		t.Helper()
		inPage(ctx, t, "the inspector shows "+method,
			poll(fmt.Sprintf(`document.querySelector("#inspector-log li")?.dataset.method === %q`, method)))
		return evaluate[map[string][2]string](ctx, t, fmt.Sprintf(`Object.fromEntries([...document.querySelectorAll("#inspector-log li:first-child table.%s tr[data-field]")]
			.map((r) => [r.dataset.field, [r.cells[2].textContent, r.cells[3].textContent]]))`, which))
	}
	check := func(t *testing.T, what string, got map[string][2]string, want map[string][2]string) {
		t.Helper()
		for f, w := range want {
			if got[f] != w {
				t.Errorf("%s: field %s shows bytes %q, value %q; want %q, %q", what, f, got[f][0], got[f][1], w[0], w[1])
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: fields %q, want those of %q", what, got, want)
		}
	}
	// idOf waits for a client of a door to be listed, and returns the
	// newest one's id.
	idOf := func(t *testing.T, door string, after uint64) uint64 {
		t.Helper()
		expr := fmt.Sprintf(`Math.max(0, ...[...document.querySelectorAll("#clients tbody tr")].filter((r) => r.cells[1].textContent === %q).map((r) => Number(r.dataset.id)))`, door)
		inPage(ctx, t, "a "+door+" client is listed", poll(expr+fmt.Sprintf(" > %d", after)))
		return uint64(evaluate[float64](ctx, t, expr))
	}

	t.Run("native", func(t *testing.T) {
		c := nexotest.Dial(t, addrs["native"])
		w := c.Hello(wire.Hello{Name: "inspected"})
		inspect(t, w.ClientID)
		c.Send(wire.AppendRequest(nil, 7, "math.add", nexotest.Operands(1, 2)))
		c.Read()
		check(t, "math.add's REQUEST", shown(t, "math.add", "request"), map[string][2]string{
			"length": {"00 00 00 21", "33 (8 + 25 bytes of body)"}, "version": {"01", "1"}, "type": {"03", "3 REQUEST"},
			"flags": {"00 00", "0x0000"}, "id": {"00 00 00 07", "7"}, "method_length": {"08", "8"},
			"method": {"6d 61 74 68 2e 61 64 64", "math.add"}, "payload": {"00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02", "[1,2]"},
		})
		check(t, "math.add's RESPONSE", shown(t, "math.add", "answer"), map[string][2]string{
			"length": {"00 00 00 10", "16 (8 + 8 bytes of body)"}, "version": {"01", "1"}, "type": {"04", "4 RESPONSE"},
			"flags": {"00 00", "0x0000"}, "id": {"00 00 00 07", "7"}, "payload": {"00 00 00 00 00 00 00 03", "3"},
		})
		c.Send(wire.AppendRequestDeadline(nil, 8, 1500, "math.div", nexotest.Operands(1, 0)))
		c.Read()
		req := shown(t, "math.div", "request")
		if req["flags"] != [2]string{"00 01", "0x0001 DEADLINE"} || req["deadline"] != [2]string{"00 00 05 dc", "1500 ms"} || req["payload"][1] != "[1,0]" {
			t.Errorf("math.div's REQUEST with a deadline: %q", req)
		}
		msg := "calc: division by zero"
		check(t, "math.div's ERROR", shown(t, "math.div", "answer"), map[string][2]string{
			"length":  {fmt.Sprintf("00 00 00 %02x", 10+len(msg)), fmt.Sprintf("%d (8 + %d bytes of body)", 10+len(msg), 2+len(msg))},
			"version": {"01", "1"}, "type": {"05", "5 ERROR"}, "flags": {"00 00", "0x0000"}, "id": {"00 00 00 08", "8"},
			"code": {"00 06", "6 DIVISION_BY_ZERO"}, "message": {hexOf([]byte(msg)), msg},
		})
		if s := text(ctx, t, "#inspector-log li:first-child .summary"); !strings.Contains(s, "math.div [1,0] → DIVISION_BY_ZERO: "+msg) {
			t.Errorf("summary %q", s)
		}

		// The list keeps the last 200, newest first, drawn at most once a
		// frame: not an insertion (and a forced layout) per event, which
		// froze the page while it watched a busy client.
		evaluate[bool](ctx, t, `window.insertions = 0;
			new MutationObserver((rs) => { window.insertions += rs.filter((r) => r.addedNodes.length).length })
				.observe(document.querySelector("#inspector-log"), {childList: true}); true`)
		var burst []byte
		for i := 1; i <= 250; i++ {
			burst = wire.AppendRequest(burst, uint32(i), "math.add", nexotest.Operands(int64(i), 0))
		}
		c.Send(burst)
		for range 250 {
			c.Read()
		}
		inPage(ctx, t, "the last 200 are kept",
			poll(`document.querySelector("#inspector-log li .summary")?.textContent.includes("math.add [250,0] → 250")`),
			poll(`document.querySelectorAll("#inspector-log > li").length === 200`))
		n := evaluate[float64](ctx, t, `window.insertions`)
		t.Logf("250 events drawn in %v insertions", n)
		if n > 100 {
			t.Errorf("250 events were drawn in %v insertions, want a few: one a frame", n)
		}

		// Stop ends the watch: what follows is not shown.
		inPage(ctx, t, "Stop",
			chromedp.Click(chromedp.CSS("#inspector-stop")),
			poll(`document.querySelector("#inspector-status").textContent.includes("stopped")`))
		c.Send(wire.AppendRequest(nil, 900, "math.sub", nexotest.Operands(9, 9)))
		c.Read()
		inspect(t, w.ClientID) // the same client: the list stays
		c.Send(wire.AppendRequest(nil, 901, "math.mul", nexotest.Operands(9, 9)))
		c.Read()
		shown(t, "math.mul", "request")
		if second := evaluate[string](ctx, t, `document.querySelectorAll("#inspector-log > li")[1].dataset.method`); second != "math.add" {
			t.Errorf("after Stop, %s was shown", second)
		}
		c.Close() // the rest takes longer than its heartbeats would wait for
		inPage(ctx, t, "no sideways scroll on a 390 px phone, inspector open",
			chromedp.EmulateViewport(390, 844),
			poll(`document.documentElement.scrollWidth <= 390`),
			chromedp.EmulateViewport(1280, 1000))
		t.Run("axe", func(t *testing.T) { checkAxe(ctx, t) })
	})

	t.Run("legacy", func(t *testing.T) {
		var last uint64
		for _, tt := range []struct {
			order               binary.AppendByteOrder
			name, command       string
			a, b                int16
			length, ab, ba, ans string
			reply               string
		}{
			{binary.LittleEndian, "little-endian", "SUMA", 3, -4, "04 00 00 00", "03 00", "fc ff", "2d 31 0a", "-1\n"},
			{binary.BigEndian, "big-endian", "RESTA", 5, 7, "00 00 00 05", "00 05", "00 07", "2d 32 0a", "-2\n"},
		} {
			c := nexotest.Dial(t, addrs["legacy"])
			id := idOf(t, "legacy", last)
			last = id
			inspect(t, id)
			if line := c.LegacyLine(legacy.Append(nil, tt.order, tt.command, tt.a, tt.b)); line != tt.reply {
				t.Fatalf("%s: %q", tt.command, line)
			}
			method, _ := legacy.Method([]byte(tt.command))
			check(t, tt.name+" "+tt.command, shown(t, method, "request"), map[string][2]string{
				"length": {tt.length, fmt.Sprint(len(tt.command))}, "a": {tt.ab, fmt.Sprint(tt.a)}, "b": {tt.ba, fmt.Sprint(tt.b)},
				"command": {hexOf([]byte(tt.command)), tt.command},
			})
			check(t, tt.name+" reply", shown(t, method, "answer"), map[string][2]string{"reply": {tt.ans, fmt.Sprintf("%q", tt.reply)}})
			names := evaluate[[]string](ctx, t, `[...document.querySelectorAll("#inspector-log li:first-child table.request tr[data-field] td:nth-child(2)")].map((td) => td.textContent)`)
			if len(names) < 3 || !strings.Contains(names[0], "int32, "+tt.name) || !strings.Contains(names[1], "int16, "+tt.name) {
				t.Errorf("%s: the fields are named %q, want the client's byte order", tt.command, names)
			}
		}
	})

	t.Run("websocket", func(t *testing.T) {
		ws, _, err := websocket.Dial(ctx, "ws://"+addrs["web"]+"/ws?name=ws-inspected", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		_, welcome, err := ws.Read(ctx)
		var w struct {
			Params struct {
				ClientID uint64 `json:"client_id"`
			} `json:"params"`
		}
		if err != nil || json.Unmarshal(welcome, &w) != nil {
			t.Fatalf("welcome %s: %v", welcome, err)
		}
		inspect(t, w.Params.ClientID)
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"jsonrpc":"2.0","method":"math.div","params":[7,2],"id":1}`)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatal(err)
		}
		inPage(ctx, t, "the call", poll(`document.querySelector("#inspector-log li")?.dataset.method === "math.div"`))
		want := "{\n  \"jsonrpc\": \"2.0\",\n  \"method\": \"math.div\",\n  \"params\": [\n    7,\n    2\n  ],\n  \"id\": 1\n}"
		if got := evaluate[string](ctx, t, `document.querySelector("#inspector-log li:first-child pre.request").textContent`); got != want {
			t.Errorf("the JSON-RPC call shows\n%s\nwant\n%s", got, want)
		}
		if got := evaluate[string](ctx, t, `document.querySelector("#inspector-log li:first-child pre.answer").textContent`); !strings.Contains(got, `"result": 3.5`) {
			t.Errorf("the JSON-RPC answer shows\n%s", got)
		}
	})
}

// hexOf is bytes as the inspector shows them: two hex digits each,
// spaced.
func hexOf(b []byte) string {
	s := make([]string, len(b))
	for i, c := range b {
		s[i] = fmt.Sprintf("%02x", c)
	}
	return strings.Join(s, " ")
}
