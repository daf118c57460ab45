package top

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/status"
)

// fakeSource answers polls with the sample the test sets, and records
// kicks.
type fakeSource struct {
	mu      sync.Mutex
	smp     Sample
	err     error // of the next polls
	polls   int
	kicked  []uint64
	kickErr error
}

func (f *fakeSource) set(smp Sample, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.smp, f.err = smp, err
}

func (f *fakeSource) Poll(context.Context) (Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	return f.smp, f.err
}

func (f *fakeSource) Kick(_ context.Context, id uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kickErr != nil {
		return false, f.kickErr
	}
	i := slices.IndexFunc(f.smp.Clients.Clients, func(c status.ClientInfo) bool { return c.ID == id })
	if i < 0 {
		return false, nil
	}
	f.kicked = append(f.kicked, id)
	c := f.smp.Clients.Clients[i]
	f.smp.Clients.Clients = slices.Delete(slices.Clone(f.smp.Clients.Clients), i, i+1)
	f.smp.Clients.Closed = append([]status.ClosedInfo{{ClientInfo: c, ClosedAt: f.smp.Time, Reason: "kicked: by admin"}}, f.smp.Clients.Closed...)
	return true, nil
}

// harness drives a model as bubbletea would, one message at a time: the
// commands Update returns run at once, and their messages go back to
// Update; ticks are not delivered (the test ticks by hand), and a quit is
// noted.
type harness struct {
	t    *testing.T
	m    *model
	src  *fakeSource
	quit bool
}

func newHarness(t *testing.T, w, h int) *harness {
	t.Helper()
	src := &fakeSource{}
	opts := Options{Interval: time.Millisecond, Target: "127.0.0.1:7070"}.withDefaults()
	run := func(f func(context.Context) tea.Msg) tea.Cmd {
		return func() tea.Msg { return f(context.Background()) }
	}
	hn := &harness{t: t, m: newModel(src, opts, lipgloss.NewRenderer(io.Discard), run), src: src}
	hn.send(tea.WindowSizeMsg{Width: w, Height: h})
	return hn
}

func (hn *harness) do(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	switch msg := cmd().(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			hn.do(c)
		}
	case tea.QuitMsg:
		hn.quit = true
	case tickMsg, nil:
	default:
		hn.send(msg)
	}
}

func (hn *harness) send(msg tea.Msg) {
	hn.t.Helper()
	_, cmd := hn.m.Update(msg)
	hn.do(cmd)
}

// poll makes the source answer smp (or err) and the model poll it, as
// at a tick.
func (hn *harness) poll(smp Sample, err error) {
	hn.t.Helper()
	hn.src.set(smp, err)
	hn.send(tickMsg(time.Now()))
}

// keys types keys: runes, or names such as "up", "enter", "esc".
func (hn *harness) keys(keys ...string) {
	hn.t.Helper()
	for _, k := range keys {
		hn.send(keyMsg(k))
	}
}

func keyMsg(k string) tea.KeyMsg {
	named := map[string]tea.KeyType{"up": tea.KeyUp, "down": tea.KeyDown, "enter": tea.KeyEnter, "esc": tea.KeyEsc,
		"backspace": tea.KeyBackspace, "ctrl+c": tea.KeyCtrlC, "pgup": tea.KeyPgUp, "pgdown": tea.KeyPgDown,
		"home": tea.KeyHome, "end": tea.KeyEnd, " ": tea.KeySpace}
	if t, ok := named[k]; ok {
		return tea.KeyMsg{Type: t, Runes: []rune(k)}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
}

func (hn *harness) view() string { return hn.m.View() }

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func info(id uint64, name, door string, requests uint64) status.ClientInfo {
	return status.ClientInfo{ID: id, Name: name, Door: door, Remote: fmt.Sprintf("10.0.0.%d:%d", id, 40000+id),
		ConnectedAt: t0.Add(-time.Duration(id) * time.Minute), LastSeen: t0, Requests: requests}
}

func sample(at time.Time, clients ...status.ClientInfo) Sample {
	return Sample{Time: at, Server: "nexo/test at 127.0.0.1:7070", Self: 1, Clients: status.Snapshot{Clients: clients}}
}

// rowOf returns the line of the clients table that shows a client id,
// and where it is among the table's rows.
func rowOf(t *testing.T, view string, id uint64) (string, int) {
	t.Helper()
	idRe := regexp.MustCompile(`^[> ] +(\d+)  `)
	n := 0
	for l := range strings.SplitSeq(view, "\n") {
		if m := idRe.FindStringSubmatch(l); m != nil {
			if m[1] == fmt.Sprint(id) {
				return l, n
			}
			n++
		}
	}
	return "", -1
}

// order returns the ids in the clients table, top to bottom.
func order(view string) []string {
	var ids []string
	seen := false
	for l := range strings.SplitSeq(view, "\n") {
		if strings.Contains(l, "  ID") && strings.Contains(l, "IN FLIGHT") {
			seen = true
			continue
		}
		if !seen {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(l, ">"))
		if len(f) == 0 || !isNumber(f[0]) {
			break
		}
		ids = append(ids, f[0])
	}
	return ids
}

func isNumber(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

func TestRates(t *testing.T) {
	hn := newHarness(t, 120, 40)
	hn.poll(sample(t0, info(1, "top", "native", 5), info(2, "a", "native", 100), info(3, "b", "web", 10)), nil)
	v := hn.view()
	for _, id := range []uint64{2, 3} {
		if l, _ := rowOf(t, v, id); !regexp.MustCompile(`\s-\s`).MatchString(l) {
			t.Errorf("client %d's rate before a second sample: %q, want -", id, l)
		}
	}
	// Two seconds later: 2 made 300 requests, 3 made 10; 4 is new.
	hn.poll(sample(t0.Add(2*time.Second), info(1, "top", "native", 7), info(2, "a", "native", 400), info(3, "b", "web", 20),
		info(4, "c", "web", 50)), nil)
	v = hn.view()
	for _, tc := range []struct {
		id   uint64
		rate string
	}{{1, "1.0"}, {2, "150"}, {3, "5.0"}, {4, "-"}} {
		l, _ := rowOf(t, v, tc.id)
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(tc.rate) + `\s`).MatchString(l) {
			t.Errorf("client %d: %q, want a rate of %s", tc.id, l, tc.rate)
		}
	}
	// The doors: native 151 req/s from 2 clients, web 5 (4 has no rate yet), all 156.
	for _, want := range []string{`native\s+2\s+151\s+407\s`, `web\s+2\s+5\.0\s+70\s`, `all\s+4\s+156\s+477\s`} {
		if !regexp.MustCompile(`(?m)^` + want).MatchString(v) {
			t.Errorf("no door totals %q in\n%s", want, v)
		}
	}
	if !strings.Contains(v, "top (this view)") {
		t.Errorf("the view's own connection is not marked:\n%s", v)
	}
	// A server that restarted gives its ids again: a session of the same
	// id but another connection time has no rate yet, even when its
	// counter is higher; and a counter that went back has none.
	again := info(2, "a", "native", 900)
	again.ConnectedAt = t0.Add(3 * time.Second)
	hn.poll(sample(t0.Add(3*time.Second), again, info(3, "b", "web", 1)), nil)
	for _, id := range []uint64{2, 3} {
		if l, _ := rowOf(t, hn.view(), id); !regexp.MustCompile(`\s-\s`).MatchString(l) {
			t.Errorf("client %d of a restarted server: %q, want no rate", id, l)
		}
	}
}

func TestSort(t *testing.T) {
	hn := newHarness(t, 120, 40)
	cs := []status.ClientInfo{info(1, "top", "native", 0), info(2, "zed", "web", 0), info(3, "alpha", "native", 0), info(4, "mid", "legacy", 0)}
	hn.poll(sample(t0, cs...), nil)
	cs[0].Requests, cs[1].Requests, cs[2].Requests, cs[3].Requests = 10, 30, 20, 5000
	cs[1].Errors, cs[3].HeartbeatRTT = 7, 900
	hn.poll(sample(t0.Add(time.Second), cs...), nil)

	if got := order(hn.view()); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("by id: %v\n%s", got, hn.view())
	}
	if !strings.Contains(hn.view(), "ID▲") {
		t.Errorf("the sort column is not marked:\n%s", hn.view())
	}
	for _, tc := range []struct {
		keys []string
		head string
		want []string
	}{
		{[]string{"s"}, "NAME▲", []string{"3", "4", "1", "2"}},
		{[]string{"r"}, "NAME▼", []string{"2", "1", "4", "3"}},
		{[]string{"s"}, "DOOR▲", []string{"4", "1", "3", "2"}}, // legacy, native (by id), web
		{[]string{"s", "s"}, "RTT▼", []string{"4", "1", "2", "3"}},
		{[]string{"s"}, "REQ/S▼", []string{"4", "2", "3", "1"}},
		{[]string{"r"}, "REQ/S▲", []string{"1", "3", "2", "4"}},
		{[]string{"s", "s"}, "ERRORS▼", []string{"2", "1", "3", "4"}},
		{[]string{"s", "s"}, "UP▼", []string{"4", "3", "2", "1"}}, // connected earliest first
		{[]string{"s"}, "ID▲", []string{"1", "2", "3", "4"}},      // round again
		{[]string{"<"}, "UP▼", []string{"4", "3", "2", "1"}},
	} {
		hn.keys(tc.keys...)
		v := hn.view()
		if got := order(v); !slices.Equal(got, tc.want) || !strings.Contains(v, tc.head) {
			t.Errorf("after %v: %v, want %v under %s\n%s", tc.keys, got, tc.want, tc.head, v)
		}
	}
	// The selection follows its client when the order changes.
	hn.keys("home", "down") // the second row: 3
	if l, _ := rowOf(t, hn.view(), 3); !strings.HasPrefix(l, ">") {
		t.Fatalf("row 2 is not selected:\n%s", hn.view())
	}
	hn.keys("r")
	if l, n := rowOf(t, hn.view(), 3); !strings.HasPrefix(l, ">") || n != 2 {
		t.Errorf("after reversing, client 3 is row %d (%q), want still selected at row 2\n%s", n, l, hn.view())
	}
}

func TestFilter(t *testing.T) {
	hn := newHarness(t, 120, 40)
	smp := sample(t0, info(1, "top", "native", 0), info(2, "web-app", "web", 0), info(3, "batch", "native", 0), info(12, "", "legacy", 0))
	smp.Clients.Closed = []status.ClosedInfo{{ClientInfo: info(9, "gone-web", "web", 3), ClosedAt: t0.Add(-5 * time.Second), Reason: "client said goodbye"},
		{ClientInfo: info(8, "old", "native", 1), ClosedAt: t0.Add(-time.Minute), Reason: "heartbeat timeout"}}
	smp.Clients.Clients[3].Remote = "192.168.5.5:9999"
	hn.poll(smp, nil)
	hn.keys("/", "W", "e", "b")
	v := hn.view()
	if !strings.Contains(v, "filter: Web▏") {
		t.Errorf("the filter being typed is not shown:\n%s", v)
	}
	if got := order(v); !slices.Equal(got, []string{"2"}) {
		t.Errorf("filter Web: %v, want [2] (name or door, any case)\n%s", got, v)
	}
	if !strings.Contains(v, "gone-web") || strings.Contains(v, "heartbeat timeout") {
		t.Errorf("filter Web: the recently closed are not filtered alike:\n%s", v)
	}
	hn.keys("enter")
	v = hn.view()
	if !strings.Contains(v, `filter "Web": 1 shown`) || strings.Contains(v, "filter: Web") {
		t.Errorf("after enter, the title should show the filter kept:\n%s", v)
	}
	// q does not quit while typing; the filter then matches ids and
	// addresses.
	for _, tc := range []struct {
		typed string
		want  []string
	}{
		{"12", []string{"12"}}, // the id: its address is another,
		{"10.0.0.3:40003", []string{"3"}},
		{"legacy", []string{"12"}},
		{"q", nil},
	} {
		hn.keys("esc", "/")
		for _, r := range tc.typed {
			hn.keys(string(r))
		}
		hn.keys("enter")
		if hn.quit {
			t.Fatal("q quit while typing the filter")
		}
		v := hn.view()
		if got := order(v); !slices.Equal(got, tc.want) {
			t.Errorf("filter %q: %v, want %v\n%s", tc.typed, got, tc.want, v)
		}
		if tc.want == nil && !strings.Contains(v, `no connected client matches "q"`) {
			t.Errorf("filter q: no word that nothing matches:\n%s", v)
		}
	}
	hn.keys("esc")
	if got := order(hn.view()); len(got) != 4 {
		t.Errorf("esc did not clear the filter: %v", got)
	}
	hn.keys("/", "x", "y", "backspace", "backspace", "backspace") // one more than there is: harmless
	if !strings.Contains(hn.view(), "filter: ▏") {
		t.Errorf("backspace did not take the typed filter back:\n%s", hn.view())
	}
	hn.keys("x", "esc")
	if got := order(hn.view()); len(got) != 4 || hn.m.editing {
		t.Errorf("esc while typing: %v, editing %v; want the filter cleared and done", got, hn.m.editing)
	}
}

func TestKick(t *testing.T) {
	hn := newHarness(t, 120, 40)
	hn.poll(sample(t0, info(1, "top", "native", 0), info(2, "victim", "native", 0), info(3, "other", "web", 0)), nil)

	// Its own connection cannot be kicked from the view.
	hn.keys("home", "k")
	if v := hn.view(); !strings.Contains(v, "client 1 is this view's own connection") || strings.Contains(v, "y/n") {
		t.Errorf("k on the view's own row:\n%s", v)
	}
	// k asks; n (or any other key) does not kick.
	hn.keys("down", "k")
	if v := hn.view(); !strings.Contains(v, "kick client 2 (victim, native, 10.0.0.2:40002)? y/n") {
		t.Fatalf("k does not ask:\n%s", v)
	}
	hn.keys("n")
	if v := hn.view(); len(hn.src.kicked) != 0 || !strings.Contains(v, "client 2 not kicked") {
		t.Fatalf("n: kicked %v\n%s", hn.src.kicked, v)
	}
	hn.keys("k", "q")
	if hn.quit || len(hn.src.kicked) != 0 {
		t.Fatalf("q answering the question: quit %v, kicked %v", hn.quit, hn.src.kicked)
	}
	// y kicks, says so, and polls at once: the client is gone, and among
	// the recently closed.
	polls := hn.src.polls
	hn.keys("k", "y")
	v := hn.view()
	if !slices.Equal(hn.src.kicked, []uint64{2}) || !strings.Contains(v, "kicked client 2") || hn.src.polls != polls+1 {
		t.Fatalf("y: kicked %v, polls %d then %d\n%s", hn.src.kicked, polls, hn.src.polls, v)
	}
	if got := order(v); !slices.Equal(got, []string{"1", "3"}) || !strings.Contains(v, "kicked: by admin") {
		t.Errorf("after the kick: rows %v\n%s", got, v)
	}
	// The selection moved to the row in the kicked client's place.
	if l, _ := rowOf(t, v, 3); !strings.HasPrefix(l, ">") {
		t.Errorf("client 3 should be selected now:\n%s", v)
	}
	// A client that left meanwhile, and a kick that fails.
	hn.keys("k")
	hn.src.set(sample(t0, info(1, "top", "native", 0)), nil)
	hn.keys("y")
	if v := hn.view(); !strings.Contains(v, "client 3 was not connected any more") {
		t.Errorf("kicking a client that left:\n%s", v)
	}
	hn.poll(sample(t0, info(1, "top", "native", 0), info(5, "x", "web", 0)), nil)
	hn.src.kickErr = errors.New("nexo: UNKNOWN_METHOD: no method \"sys.kick\"")
	hn.keys("end", "k", "Y")
	if v := hn.view(); !strings.Contains(v, `kick client 5: nexo: UNKNOWN_METHOD`) {
		t.Errorf("a kick that failed:\n%s", v)
	}
	// No clients at all.
	hn.poll(Sample{Time: t0}, nil)
	hn.keys("k")
	if v := hn.view(); !strings.Contains(v, "no client selected") || !strings.Contains(v, "no clients connected") {
		t.Errorf("k with no clients:\n%s", v)
	}
}

// TestKeysTogether: keys typed faster than they are read come as one
// message, and each counts; pasted text goes to the filter whole.
func TestKeysTogether(t *testing.T) {
	hn := newHarness(t, 120, 40)
	hn.poll(sample(t0, info(1, "top", "native", 0), info(2, "web-app", "web", 0), info(3, "batch", "native", 0)), nil)
	hn.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("ss")})
	if v := hn.view(); !strings.Contains(v, "DOOR▲") {
		t.Errorf("ss: want the sort two columns on, by door:\n%s", v)
	}
	hn.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("/web")})
	hn.keys("enter")
	if got := order(hn.view()); !slices.Equal(got, []string{"2"}) {
		t.Errorf("/web: %v, want [2]\n%s", got, hn.view())
	}
	hn.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("/")})
	hn.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q"), Paste: true})
	hn.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("batch"), Paste: true})
	hn.keys("enter")
	if hn.quit || hn.m.filter != "webqbatch" {
		t.Errorf("pasted: quit %v, filter %q; want webqbatch", hn.quit, hn.m.filter)
	}
	hn.keys("esc")
	hn.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("kn")})
	if len(hn.src.kicked) != 0 || !strings.Contains(hn.view(), "not kicked") {
		t.Errorf("kn: kicked %v\n%s", hn.src.kicked, hn.view())
	}
}

func TestQuit(t *testing.T) {
	for _, k := range []string{"q", "ctrl+c"} {
		hn := newHarness(t, 80, 24)
		hn.keys(k)
		if !hn.quit {
			t.Errorf("%s does not quit", k)
		}
	}
	hn := newHarness(t, 80, 24)
	hn.keys("/", "ctrl+c")
	if !hn.quit {
		t.Error("ctrl+c does not quit while typing a filter")
	}
}

func TestServerGone(t *testing.T) {
	hn := newHarness(t, 120, 30)
	hn.poll(Sample{}, errors.New("dial tcp 127.0.0.1:7070: connect: connection refused"))
	v := hn.view()
	if !strings.Contains(v, "connecting…") || !strings.Contains(v, "error, retrying every 1ms: dial tcp 127.0.0.1:7070: connect: connection refused") {
		t.Errorf("before the first answer:\n%s", v)
	}
	hn.poll(sample(t0, info(1, "top", "native", 0), info(2, "a", "web", 0)), nil)
	if v := hn.view(); strings.Contains(v, "error") || len(order(v)) != 2 {
		t.Errorf("after an answer:\n%s", v)
	}
	// The server goes away: the last figures stay, marked with their time.
	hn.poll(Sample{}, errors.New("sys.clients: client: connection closed"))
	v = hn.view()
	if !strings.Contains(v, "error, retrying every 1ms (the figures are from 12:00:00): sys.clients: client: connection closed") || len(order(v)) != 2 {
		t.Errorf("after a failed poll:\n%s", v)
	}
	// A tick while a poll is in flight does not start another.
	hn.m.polling = true
	polls := hn.src.polls
	hn.send(tickMsg(time.Now()))
	if hn.src.polls != polls {
		t.Errorf("a tick polled while a poll was in flight")
	}
}

func TestCluster(t *testing.T) {
	hn := newHarness(t, 160, 40)
	cluster := func(at time.Time, gwReqs, wkReqs uint64) Sample {
		smp := sample(at, info(1, "top", "native", 0))
		smp.Cluster = &backplane.Cluster{
			Gateways: []backplane.GatewayStats{{Gateway: "gw-a", Stats: status.Stats{Version: "0.9.0", Clients: 1, Requests: gwReqs, UptimeS: 3723}}},
			Workers: []backplane.WorkerInfo{{ID: "w1", Version: "0.9.0", Started: t0.Add(-time.Hour), Requests: wkReqs,
				Metadata: map[string]string{"host": "box", "services": "math,sys", backplane.MetadataRuntime: "go"}}},
			Totals: backplane.ClusterTotals{Gateways: 1, Workers: 1, Clients: 1, Requests: gwReqs},
		}
		return smp
	}
	hn.poll(cluster(t0, 100, 50), nil)
	hn.poll(cluster(t0.Add(time.Second), 130, 60), nil)
	v := hn.view()
	for _, want := range []string{`cluster: 1 gateway, 1 worker, 1 client, 130 requests answered`,
		`(?m)^gw-a\s+0\.9\.0\s+1\s+30\.0\s+130\s+0\s+0\s+1h02m$`, `(?m)^w1\s+box\s+go\s+0\.9\.0\s+math,sys\s+10\.0\s+60\s+0\s+1h00m$`} {
		if !regexp.MustCompile(want).MatchString(v) {
			t.Errorf("no %q in\n%s", want, v)
		}
	}
	smp := sample(t0, info(1, "top", "native", 0))
	smp.ClusterErr = errors.New("sys.cluster: nexo: UNAVAILABLE: no connection to NATS")
	hn.poll(smp, nil)
	if v := hn.view(); !strings.Contains(v, "cluster: sys.cluster: nexo: UNAVAILABLE: no connection to NATS") {
		t.Errorf("a cluster that could not be gathered:\n%s", v)
	}
}

func TestScroll(t *testing.T) {
	hn := newHarness(t, 100, 14)
	var cs []status.ClientInfo
	for id := uint64(1); id <= 40; id++ {
		cs = append(cs, info(id, fmt.Sprint("c", id), "native", 0))
	}
	hn.poll(sample(t0, cs...), nil)
	check := func(want uint64) {
		t.Helper()
		v := hn.view()
		if l, _ := rowOf(t, v, want); !strings.HasPrefix(l, ">") {
			t.Fatalf("client %d is not shown selected:\n%s", want, v)
		}
		if n := strings.Count(v, "\n") + 1; n > 14 {
			t.Fatalf("%d lines on a terminal of 14", n)
		}
	}
	for range 20 {
		hn.keys("down")
	}
	check(21)
	hn.keys("pgdown", "pgdown", "pgdown", "pgdown")
	check(40)
	hn.keys("up")
	check(39)
	hn.keys("home")
	check(1)
	if got := order(hn.view()); got[0] != "1" {
		t.Errorf("home: the table starts at %v", got)
	}
	hn.keys("end", "pgup")
	check(40 - uint64(hn.m.layout().clients.shown))
}

// TestSmallTerminals draws every part of the view, a question and an
// error included, on terminals from nothing to small: no panic, and
// nothing beyond the terminal's width and height.
func TestSmallTerminals(t *testing.T) {
	hn := newHarness(t, 80, 24)
	smp := sample(t0, info(1, "top", "native", 0), info(2, "a-rather-long-client-name-\x1b[2J-with-escapes", "web", 0))
	smp.Clients.Closed = []status.ClosedInfo{{ClientInfo: info(9, "gone", "web", 3), ClosedAt: t0, Reason: "heartbeat timeout"}}
	smp.Cluster = &backplane.Cluster{Gateways: []backplane.GatewayStats{{Gateway: "gw"}}, Workers: []backplane.WorkerInfo{{ID: "w"}}}
	hn.poll(smp, nil)
	hn.poll(Sample{}, errors.New("connection refused"))
	hn.keys("end", "k")
	for _, state := range []string{"asking", "typing", "plain"} {
		switch state {
		case "typing":
			hn.keys("n", "/", "a")
		case "plain":
			hn.keys("esc")
		}
		for w := 0; w <= 30; w++ {
			for h := 0; h <= 12; h++ {
				hn.send(tea.WindowSizeMsg{Width: w, Height: h})
				v := hn.view()
				if strings.Contains(v, "\x1b") {
					t.Fatalf("%s %dx%d: an escape reached the terminal: %q", state, w, h, v)
				}
				lines := strings.Split(v, "\n")
				if v == "" {
					lines = nil
				}
				if len(lines) > h || (w > 0 && h > 0 && len(lines) == 0) {
					t.Fatalf("%s %dx%d: %d lines", state, w, h, len(lines))
				}
				for _, l := range lines {
					if lipgloss.Width(l) > w {
						t.Fatalf("%s %dx%d: a line of %d cells: %q", state, w, h, lipgloss.Width(l), l)
					}
				}
			}
		}
	}
	// Grown again, everything is there.
	hn.send(tea.WindowSizeMsg{Width: 160, Height: 40})
	v := hn.view()
	for _, want := range []string{"nexo top", "DOOR", "a-rather-long-client-name-?[2J-…", "recently closed: 1", "cluster:", "q quit"} {
		if !strings.Contains(v, want) {
			t.Errorf("no %q in\n%s", want, v)
		}
	}
}

// TestRun runs the program as nexo top does, on a pipe and a buffer: it
// polls, draws, and q ends it; so does the end of its context.
func TestRun(t *testing.T) {
	base := nexotest.ProjectGoroutines()
	src := &fakeSource{}
	src.set(sample(t0, info(1, "top", "native", 0), info(2, "someone", "web", 0)), nil)
	in, typing := io.Pipe()
	defer in.Close()
	out := &nexotest.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), src, Options{Interval: 10 * time.Millisecond}, in, out) }()
	nexotest.WaitFor(t, 10*time.Second, "the clients drawn", func() bool { return strings.Contains(out.String(), "someone") })
	nexotest.WaitFor(t, 10*time.Second, "polls every interval", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.polls >= 3
	})
	if _, err := typing.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end Run")
	}

	ctx, cancel := context.WithCancel(context.Background())
	in2, _ := io.Pipe()
	defer in2.Close()
	go func() { done <- Run(ctx, src, Options{}, in2, io.Discard) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run with its context ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the end of ctx did not end Run")
	}
	nexotest.CheckGoroutines(t, base)
}
