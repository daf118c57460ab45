package top

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"

	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/status"
)

// styles are the view's looks, made for its output: a renderer over a
// writer that is not a terminal leaves the text plain.
type styles struct {
	plain, title, head, sel, err, note, help lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		plain: r.NewStyle(),
		title: r.NewStyle().Bold(true),
		head:  r.NewStyle().Bold(true).Foreground(lipgloss.Color("6")),
		sel:   r.NewStyle().Reverse(true),
		err:   r.NewStyle().Bold(true).Foreground(lipgloss.Color("1")),
		note:  r.NewStyle().Foreground(lipgloss.Color("3")),
		help:  r.NewStyle().Faint(true),
	}
}

// line is one line of the view, plain text and how to show it.
type line struct {
	text  string
	style lipgloss.Style
	fill  bool // padded to the full width, for a highlight that spans it
}

// block is a part of the view that gets as many lines as the terminal
// can spare: its head whenever it is shown at all, then some of its
// body from first on.
type block struct {
	head, body []line
	first      int
	on         bool // the head was given its lines
	shown      int  // body lines given
}

// mostClosed is how many recently closed sessions are shown before the
// clients get more rows.
const mostClosed = 5

// fewestClients is how many clients are shown before the other blocks
// get lines.
const fewestClients = 3

// screen is the view cut into its parts.
type screen struct {
	top, bottom                     []line // shown first: the title and the error; the status and the help
	doors, clients, closed, cluster block
}

// size is the terminal's size: 80×24 until bubbletea says.
func (m *model) size() (w, h int) {
	if !m.sized {
		return 80, 24
	}
	return m.width, m.height
}

// layout cuts the view into its parts and gives each its lines.
func (m *model) layout() *screen {
	_, h := m.size()
	s := &screen{top: m.topLines(), bottom: m.bottomLines()}
	s.doors, s.clients, s.closed, s.cluster = m.doorsBlock(), m.clientsBlock(), m.closedBlock(), m.clusterBlock()
	left := h - len(s.top) - len(s.bottom)
	give := func(b *block, n int) {
		if len(b.head)+len(b.body) == 0 || left <= 0 {
			return
		}
		if !b.on { // the head first, and with one body line at least
			if left < len(b.head)+min(1, len(b.body)) {
				return
			}
			b.on = true
			left -= len(b.head)
		}
		n = min(n, len(b.body)-b.shown, left)
		b.shown += n
		left -= n
	}
	give(&s.clients, fewestClients)
	give(&s.doors, len(s.doors.body))
	give(&s.closed, mostClosed)
	give(&s.cluster, len(s.cluster.body))
	give(&s.clients, len(s.clients.body))
	give(&s.closed, len(s.closed.body))
	return s
}

// View draws the view: title, door totals, clients, recently closed,
// cluster, status line and keys, each cut to the terminal's width, and
// as many lines of each as its height allows.
func (m *model) View() string {
	w, h := m.size()
	if w <= 0 || h <= 0 {
		return ""
	}
	s := m.layout()
	var lines []line
	if fixed := len(s.top) + len(s.bottom); h < fixed {
		// Too short for even these: the title, the keys, then the rest.
		keep := append([]line{s.top[0], s.bottom[len(s.bottom)-1]}, s.top[1:]...)
		keep = append(keep, s.bottom[:len(s.bottom)-1]...)
		lines = keep[:h]
	} else {
		lines = append(lines, s.top...)
		for _, b := range []block{s.doors, s.clients, s.closed, s.cluster} {
			if !b.on {
				continue
			}
			lines = append(lines, b.head...)
			first := min(b.first, len(b.body)-b.shown)
			lines = append(lines, b.body[first:first+b.shown]...)
		}
		lines = append(lines, s.bottom...)
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		text := l.text
		if l.fill {
			if n := lipgloss.Width(text); n < w {
				text += strings.Repeat(" ", w-n)
			}
		}
		out[i] = l.style.MaxWidth(w).Render(text)
	}
	return strings.Join(out, "\n")
}

// topLines are the title and, after a failed poll, the error.
func (m *model) topLines() []line {
	title := "nexo top · " + m.opts.Target + " · connecting…"
	if smp := m.last; smp != nil {
		title = fmt.Sprintf("nexo top · %s · %s · %s", clean(smp.Server), count(len(smp.Clients.Clients), "client"), smp.Time.Format(time.TimeOnly))
		if m.filter != "" {
			title += fmt.Sprintf(" · filter %q: %d shown", m.filter, len(m.rows()))
		}
	}
	out := []line{{text: title, style: m.st.title}}
	if m.lastErr != nil {
		e := "error, retrying every " + m.opts.Interval.String()
		if m.last != nil {
			e += " (the figures are from " + m.last.Time.Format(time.TimeOnly) + ")"
		}
		out = append(out, line{text: e + ": " + clean(m.lastErr.Error()), style: m.st.err})
	}
	return out
}

// bottomLines are the status line, when there is something to say, and
// the keys.
func (m *model) bottomLines() []line {
	var out []line
	help := "↑↓ select · s/< sort · r reverse · / filter · esc clear · k kick · q quit"
	switch {
	case m.confirm != 0:
		what := strconv.FormatUint(m.confirm, 10)
		if i := slices.IndexFunc(m.last.Clients.Clients, func(c status.ClientInfo) bool { return c.ID == m.confirm }); i >= 0 {
			c := m.last.Clients.Clients[i]
			what += " (" + strings.Join(nonEmpty(clean(c.Name), c.Door, clean(c.Remote)), ", ") + ")"
		}
		out = append(out, line{text: "kick client " + what + "? y/n", style: m.st.note})
		help = "y kick · any other key: do not"
	case m.editing:
		out = append(out, line{text: "filter: " + m.filter + "▏", style: m.st.note})
		help = "type to filter by id, name, door or address · enter keep · esc clear"
	case m.note != "":
		st := m.st.note
		if m.noteErr {
			st = m.st.err
		}
		out = append(out, line{text: clean(m.note), style: st})
	}
	return append(out, line{text: help, style: m.st.help})
}

// doorsBlock is the totals per door, of every client whatever the filter.
func (m *model) doorsBlock() block {
	if m.last == nil || len(m.last.Clients.Clients) == 0 {
		return block{}
	}
	type totals struct {
		clients        int
		rate           float64
		hasRate        bool
		requests, errs uint64
		inFlight       int64
	}
	doors := map[string]*totals{}
	var all totals
	for _, c := range m.last.Clients.Clients {
		t := doors[c.Door]
		if t == nil {
			t = &totals{}
			doors[c.Door] = t
		}
		rate, ok := m.rates.get(sessionOf(c))
		for _, t := range []*totals{t, &all} {
			t.clients++
			t.rate += rate
			t.hasRate = t.hasRate || ok
			t.requests += c.Requests
			t.errs += c.Errors
			t.inFlight += c.InFlight
		}
	}
	tb := table{head: []string{"DOOR", "CLIENTS", "REQ/S", "REQUESTS", "ERRORS", "IN FLIGHT"}, right: []bool{false, true, true, true, true, true}}
	add := func(name string, t *totals) {
		tb.add(name, strconv.Itoa(t.clients), rateText(t.rate, t.hasRate), fmt.Sprint(t.requests), fmt.Sprint(t.errs), fmt.Sprint(t.inFlight))
	}
	for _, d := range slices.Sorted(maps.Keys(doors)) {
		add(d, doors[d])
	}
	if len(doors) > 1 {
		add("all", &all)
	}
	head, body := tb.format("")
	return block{head: []line{{text: head, style: m.st.head}}, body: m.plain(body)}
}

// clientsBlock is the table of the connected clients that match the
// filter, sorted, the selected one highlighted.
func (m *model) clientsBlock() block {
	if m.last == nil {
		return block{}
	}
	rows := m.rows()
	tb := table{head: columnNames[:], right: []bool{true, false, false, false, true, true, true, true, true, true},
		max: []int{0, 32, 0, 40}}
	arrow := "▲"
	if m.sortBy.descending() != m.reverse {
		arrow = "▼"
	}
	tb.head = slices.Clone(tb.head)
	tb.head[m.sortBy] += arrow
	for _, r := range rows {
		name := r.Name
		if r.Identity != "" {
			name += " <" + r.Identity + ">"
		}
		if r.ID == m.last.Self {
			name += " (this view)"
		}
		tb.add(strconv.FormatUint(r.ID, 10), dash(name), r.Door, r.Remote, rttText(r.HeartbeatRTT), rateText(r.rate, r.hasRate),
			fmt.Sprint(r.Requests), fmt.Sprint(r.Errors), fmt.Sprint(r.InFlight), since(m.last.Time, r.ConnectedAt))
	}
	head, body := tb.format("  ")
	b := block{head: []line{{text: head, style: m.st.head}}, first: m.offset}
	for i, text := range body {
		if i == m.selIdx {
			b.body = append(b.body, line{text: "> " + text[2:], style: m.st.sel, fill: true})
			continue
		}
		b.body = append(b.body, line{text: text, style: m.st.plain})
	}
	if len(rows) == 0 {
		what := "no clients connected"
		if m.filter != "" {
			what = fmt.Sprintf("no connected client matches %q", m.filter)
		}
		b.body = []line{{text: "  " + what, style: m.st.plain}}
	}
	return b
}

// closedBlock is the recently closed sessions that match the filter,
// newest first, with the reasons.
func (m *model) closedBlock() block {
	closed := m.closed()
	if len(closed) == 0 {
		return block{}
	}
	tb := table{head: []string{"ID", "NAME", "DOOR", "REMOTE", "CLOSED", "REASON", "REQUESTS", "ERRORS"},
		right: []bool{true, false, false, false, true, false, true, true}, max: []int{0, 32, 0, 40, 0, 48}}
	for _, c := range closed {
		tb.add(strconv.FormatUint(c.ID, 10), dash(c.Name), c.Door, c.Remote, since(m.last.Time, c.ClosedAt)+" ago", c.Reason,
			fmt.Sprint(c.Requests), fmt.Sprint(c.Errors))
	}
	head, body := tb.format("  ")
	return block{head: []line{{text: fmt.Sprintf("recently closed: %d", len(closed)), style: m.st.title}, {text: head, style: m.st.head}},
		body: m.plain(body)}
}

// clusterBlock is a gateway's cluster: its gateways and its workers.
func (m *model) clusterBlock() block {
	if m.last == nil {
		return block{}
	}
	if err := m.last.ClusterErr; err != nil {
		return block{head: []line{{text: "cluster: " + clean(err.Error()), style: m.st.err}}}
	}
	cl := m.last.Cluster
	if cl == nil {
		return block{}
	}
	t := cl.Totals
	b := block{head: []line{{text: fmt.Sprintf("cluster: %s, %s, %s, %s answered", count(t.Gateways, "gateway"), count(t.Workers, "worker"),
		count(t.Clients, "client"), count(int(t.Requests), "request")), style: m.st.title}}}
	gw := table{head: []string{"GATEWAY", "VERSION", "CLIENTS", "REQ/S", "REQUESTS", "FORWARDED", "UNAVAILABLE", "UP"},
		right: []bool{false, false, true, true, true, true, true, true}}
	for _, g := range cl.Gateways {
		rate, ok := m.gwRates.get(g.Gateway)
		gw.add(g.Gateway, dash(g.Stats.Version), strconv.Itoa(g.Stats.Clients), rateText(rate, ok), fmt.Sprint(g.Stats.Requests),
			fmt.Sprint(g.Forward.Sent), fmt.Sprint(g.Forward.Unavailable), age(time.Duration(g.Stats.UptimeS*float64(time.Second))))
	}
	head, body := gw.format("")
	b.body = append(b.body, line{text: head, style: m.st.head})
	b.body = append(b.body, m.plain(body)...)
	wk := table{head: []string{"WORKER", "HOST", "RUNTIME", "VERSION", "SERVICES", "REQ/S", "REQUESTS", "ERRORS", "UP"},
		right: []bool{false, false, false, false, false, true, true, true, true}, max: []int{0, 0, 0, 0, 40}}
	for _, w := range cl.Workers {
		rate, ok := m.wkRates.get(w.ID)
		wk.add(w.ID, dash(w.Metadata["host"]), dash(w.Metadata[backplane.MetadataRuntime]), dash(w.Version), dash(w.Metadata["services"]),
			rateText(rate, ok), fmt.Sprint(w.Requests), strconv.Itoa(w.Errors), since(m.last.Time, w.Started))
	}
	if len(cl.Workers) > 0 {
		head, body := wk.format("")
		b.body = append(b.body, line{text: head, style: m.st.head})
		b.body = append(b.body, m.plain(body)...)
	}
	return b
}

func (m *model) plain(texts []string) []line {
	out := make([]line, len(texts))
	for i, t := range texts {
		out[i] = line{text: t, style: m.st.plain}
	}
	return out
}

// table lays out columns of text.
type table struct {
	head  []string
	right []bool // right-aligned columns
	max   []int  // widest a column's cells may be, 0 or absent: no bound
	rows  [][]string
}

// add adds a row; the text is made safe to print and cut to the column's
// widest.
func (t *table) add(cells ...string) {
	for i, c := range cells {
		c = clean(c)
		if i < len(t.max) && t.max[i] > 0 && lipgloss.Width(c) > t.max[i] {
			r := []rune(c)
			for lipgloss.Width(string(r)) > t.max[i]-1 {
				r = r[:len(r)-1]
			}
			c = string(r) + "…"
		}
		cells[i] = c
	}
	t.rows = append(t.rows, cells)
}

// format returns the head and the rows, each prefixed, columns two
// spaces apart and as wide as their widest cell.
func (t *table) format(prefix string) (head string, rows []string) {
	widths := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], lipgloss.Width(c))
		}
	}
	join := func(cells []string) string {
		var b strings.Builder
		b.WriteString(prefix)
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-lipgloss.Width(c))
			if i < len(t.right) && t.right[i] {
				b.WriteString(pad + c)
			} else if i < len(cells)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
		}
		return b.String()
	}
	for _, r := range t.rows {
		rows = append(rows, join(r))
	}
	return join(t.head), rows
}

func dash(s string) string { return cmp.Or(s, "-") }

func nonEmpty(ss ...string) []string {
	return slices.DeleteFunc(ss, func(s string) bool { return s == "" })
}

// count says n things, in the singular for one: "1 client", "2 clients".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// rateText shows a rate per second, "-" before there is one.
func rateText(r float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case r < 100:
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

// rttText shows a heartbeat round trip in microseconds, "-" before the
// first.
func rttText(us int64) string {
	switch {
	case us <= 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 1_000_000:
		return fmt.Sprintf("%.1fms", float64(us)/1e3)
	}
	return fmt.Sprintf("%.2fs", float64(us)/1e6)
}

// since shows the time from t to now, "-" for no time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return age(now.Sub(t))
}

// age shows a duration in its two largest units: 42s, 3m05s, 2h07m, 4d03h.
func age(d time.Duration) string {
	d = max(d, 0)
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s/3600%24)
}
