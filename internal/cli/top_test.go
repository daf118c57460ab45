package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/legacy"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/status"
)

// tmuxTerm is a terminal that tmux draws in the background: a test types
// into it (send-keys) and reads what is on it (capture-pane).
type tmuxTerm struct {
	t      *testing.T
	socket string // the socket of a tmux server of the test's own (-S)
}

// startTmux runs args in a new detached tmux session of w×h cells, on a
// tmux server of its own that is killed when the test ends. The pane
// stays when the program exits, so that its exit status can be read.
func startTmux(t *testing.T, w, h int, args ...string) *tmuxTerm {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "tmux.conf")
	if err := os.WriteFile(conf, []byte("set -g remain-on-exit on\nset -g status off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tm := &tmuxTerm{t: t, socket: filepath.Join(dir, "tmux.sock")}
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", tm.socket, "kill-server").Run() })
	tm.tmux(append([]string{"-f", conf, "-u", "new-session", "-d", "-x", fmt.Sprint(w), "-y", fmt.Sprint(h), "--"}, args...)...)
	return tm
}

func (tm *tmuxTerm) tmux(args ...string) string {
	tm.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-S", tm.socket}, args...)...)
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys types keys, in tmux's names ("Enter", "Escape") or as text.
func (tm *tmuxTerm) keys(keys ...string) {
	tm.t.Helper()
	tm.tmux(append([]string{"send-keys", "--"}, keys...)...)
}

// screen is what the terminal shows now.
func (tm *tmuxTerm) screen() string {
	tm.t.Helper()
	return tm.tmux("capture-pane", "-p")
}

// waitScreen polls the screen until cond holds, and returns it.
func (tm *tmuxTerm) waitScreen(what string, cond func(string) bool) string {
	tm.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := tm.screen()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the screen never showed %s; it shows:\n%s", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pane returns whether the program in the pane has exited, and its exit
// status.
func (tm *tmuxTerm) pane() (dead bool, status string) {
	tm.t.Helper()
	f := strings.Fields(tm.tmux("display-message", "-p", "#{pane_dead} #{pane_dead_status}#{?pane_dead_signal, signal #{pane_dead_signal},}"))
	return len(f) > 0 && f[0] == "1", strings.Join(f[1:], " ")
}

// clientRow matches the clients table's row of a client by name: the
// selection mark, the id, and the rest of the row.
func clientRow(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^([> ]) +(\d+)  ` + regexp.QuoteMeta(name) + `\s.*$`)
}

// TestTopCommandLine: nexo top's mistakes in the command line are usage
// errors, and it refuses to draw where there is no terminal.
func TestTopCommandLine(t *testing.T) {
	for _, args := range [][]string{{"top", "extra"}, {"top", "--interval", "0s"}, {"top", "--interval", "soon"}} {
		if _, _, err := run(nil, args...); !errors.As(err, new(usageError)) {
			t.Errorf("nexo %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
	if _, _, err := run(nil, "top", "--addr", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "top needs a terminal") {
		t.Errorf("nexo top on a buffer: %v, want it to ask for a terminal", err)
	}
}

// TestTopInTmux runs the built nexo top in a real terminal (tmux) against
// a real server: it says the server is not there and retries until it
// is, shows the clients with their doors and request rates, sorts,
// filters, survives a terminal of 12×3, kicks a client after y, and quits
// with q, exit status 0.
func TestTopInTmux(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs it in tmux")
	}
	_, err := exec.LookPath("tmux")
	need(t, "tmux", err == nil)
	bin := filepath.Join(t.TempDir(), "nexo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/nexo")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// nexo top first, with no server there: it says so, and retries.
	native := nexotest.FreeAddr(t)
	// The shell writes nexo top's exit status to a file: tmux (3.3a)
	// sometimes marks the pane dead without ever recording the status.
	exitFile := filepath.Join(t.TempDir(), "exit")
	tm := startTmux(t, 120, 40, "sh", "-c", bin+` top --addr `+native+` --interval 200ms; echo $? >`+exitFile)
	tm.waitScreen("the error line", func(s string) bool {
		return strings.Contains(s, "error, retrying every 200ms") && strings.Contains(s, "connection refused") && strings.Contains(s, "q quit")
	})
	addrs := serveDoors(t, 4, nil, "--native-addr", native)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dial := func(name string) *client.Client {
		c, err := client.Dial(ctx, native, &client.Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	busy, victim, idle := dial("busy-bee"), dial("victim-client"), dial("idle-ant")
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { // busy-bee makes requests all along
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if _, err := busy.Add(ctx, 1, 2); err != nil && ctx.Err() == nil {
					t.Errorf("busy-bee: %v", err)
					return
				}
			}
		}
	})
	for range 3 {
		if _, err := victim.Add(ctx, 2, 2); err != nil {
			t.Fatal(err)
		}
	}
	leg := nexotest.Dial(t, addrs["legacy"])
	if got := leg.LegacyLine(legacy.Append(nil, binary.LittleEndian, "SUMA", 2, 2)); got != "4\n" {
		t.Fatalf("legacy: %q", got)
	}

	// The clients, each with its door; busy-bee's rate once two polls
	// saw it; the totals per door.
	rate := regexp.MustCompile(`(?m)^[> ] +\d+  busy-bee\s+native\s+127\.0\.0\.1:\d+\s+\S+\s+(\d+(\.\d)?)\s`)
	s := tm.waitScreen("the clients, and busy-bee's rate", func(s string) bool {
		m := rate.FindStringSubmatch(s)
		return m != nil && m[1] != "0.0" && clientRow("victim-client").MatchString(s) && clientRow("idle-ant").MatchString(s) &&
			regexp.MustCompile(`(?m)^  +\d+  -\s+legacy\s`).MatchString(s) && !strings.Contains(s, "error")
	})
	for _, want := range []string{`(?m)^DOOR\s+CLIENTS\s+REQ/S`, `(?m)^native\s+4\s`, `(?m)^legacy\s+1\s`, `(?m)^all\s+5\s`, `nexo-top \(this view\)`} {
		if !regexp.MustCompile(want).MatchString(s) {
			t.Errorf("no %s on the screen:\n%s", want, s)
		}
	}

	// Sort by name (s once from the id), then the other way round (r).
	tm.keys("s")
	names := regexp.MustCompile(`(?m)^[> ] +\d+  (busy-bee|idle-ant|victim-client)\s`)
	order := func(s string) string { // of the connected: the table above the recently closed
		s, _, _ = strings.Cut(s, "recently closed")
		var out []string
		for _, m := range names.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		return strings.Join(out, ",")
	}
	tm.waitScreen("the rows by name", func(s string) bool {
		return strings.Contains(s, "NAME▲") && order(s) == "busy-bee,idle-ant,victim-client"
	})
	tm.keys("r")
	tm.waitScreen("the rows by name, reversed", func(s string) bool {
		return strings.Contains(s, "NAME▼") && order(s) == "victim-client,idle-ant,busy-bee"
	})

	// Filter: only the matching rows; Escape brings the others back.
	tm.keys("/", "ant", "Enter")
	tm.waitScreen("idle-ant alone", func(s string) bool {
		return strings.Contains(s, `filter "ant": 1 shown`) && order(s) == "idle-ant"
	})
	tm.keys("Escape")
	tm.waitScreen("every row again", func(s string) bool { return order(s) == "victim-client,idle-ant,busy-bee" })

	// A terminal far too small still draws, and the view comes back.
	tm.tmux("resize-window", "-x", "12", "-y", "3")
	tm.waitScreen("the title, cut to 12 cells", func(s string) bool { return strings.HasPrefix(s, "nexo top · n") })
	tm.tmux("resize-window", "-x", "120", "-y", "40")
	tm.waitScreen("the rows again", func(s string) bool { return order(s) == "victim-client,idle-ant,busy-bee" })
	if dead, st := tm.pane(); dead {
		t.Fatalf("nexo top exited (%s) on a small terminal", st)
	}

	// Kick victim-client: select it (the first row), k asks, y kicks.
	tm.keys("Home", "k")
	prompt := fmt.Sprintf("kick client %d (victim-client, native, ", victim.ID())
	tm.waitScreen("the question", func(s string) bool {
		row := clientRow("victim-client").FindStringSubmatch(s)
		return strings.Contains(s, prompt) && strings.Contains(s, "? y/n") && row != nil && row[1] == ">"
	})
	tm.keys("y")
	tm.waitScreen("the kick done, and victim-client among the closed", func(s string) bool {
		return strings.Contains(s, fmt.Sprintf("kicked client %d", victim.ID())) && order(s) == "idle-ant,busy-bee" &&
			regexp.MustCompile(fmt.Sprintf(`(?m)^ +%d  victim-client\s+native\s+\S+\s+\S+ ago\s+kicked\s`, victim.ID())).MatchString(s)
	})
	select {
	case <-victim.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("victim-client's connection did not end")
	}
	if err := victim.Err(); !errors.Is(err, client.ErrClosed) || !strings.Contains(err.Error(), "kicked") {
		t.Errorf("victim-client's connection ended with %v, want a GOODBYE saying kicked", err)
	}
	var snap status.Snapshot
	raw, err := idle.Call(ctx, "sys.clients", nil)
	if err == nil {
		err = json.Unmarshal(raw, &snap)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range snap.Clients {
		if c.ID == victim.ID() {
			t.Errorf("sys.clients still lists the kicked client: %+v", c)
		}
	}
	kicked := false
	for _, c := range snap.Closed {
		kicked = kicked || c.ID == victim.ID() && strings.HasPrefix(c.Reason, "kicked")
	}
	if !kicked {
		t.Errorf("sys.clients does not list client %d as closed by a kick: %+v", victim.ID(), snap.Closed)
	}

	// q quits, with exit status 0.
	tm.keys("q")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.ReadFile(exitFile); err == nil && len(st) > 0 {
			if s := strings.TrimSpace(string(st)); s != "0" {
				t.Errorf("nexo top exited with status %s, want 0", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("q did not end nexo top:\n%s", tm.screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
