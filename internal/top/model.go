package top

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/nexo-project/nexo/internal/status"
)

// column is a column of the clients table; the table is sorted by one.
type column int

const (
	colID column = iota
	colName
	colDoor
	colRemote
	colRTT
	colRate
	colRequests
	colErrors
	colInFlight
	colUp
	numColumns
)

var columnNames = [numColumns]string{"ID", "NAME", "DOOR", "REMOTE", "RTT", "REQ/S", "REQUESTS", "ERRORS", "IN FLIGHT", "UP"}

func (c column) String() string {
	if c < 0 || c >= numColumns {
		return "column(" + strconv.Itoa(int(c)) + ")"
	}
	return columnNames[c]
}

// descending reports whether the column sorts largest first unless
// reversed: the figures do, so that the busiest or slowest client comes
// first; ids and names do not.
func (c column) descending() bool { return c >= colRTT }

// row is a connected client as the table shows it.
type row struct {
	status.ClientInfo
	rate    float64 // requests per second between the last two samples
	hasRate bool    // false until the client was in two samples
}

// Messages of the view's own.
type (
	tickMsg   time.Time
	sampleMsg struct {
		smp Sample
		err error
	}
	kickMsg struct {
		id     uint64
		kicked bool
		err    error
	}
)

// model is the view's state. bubbletea calls Update and View from one
// goroutine; polls and kicks run off it, through run, and come back as
// messages.
type model struct {
	src  Source                                      // set at construction
	opts Options                                     // set at construction, defaults filled
	run  func(func(context.Context) tea.Msg) tea.Cmd // set at construction: runs a call off the event loop
	st   styles                                      // set at construction

	width, height int  // the terminal's, from WindowSizeMsg
	sized         bool // a WindowSizeMsg came

	last    *Sample        // the last sample that answered; nil before the first
	lastErr error          // why the last poll failed; nil once one answers
	polling bool           // a poll is in flight: ticks do not start another
	rates   rater[session] // clients'
	gwRates rater[string]  // gateways', by name
	wkRates rater[string]  // workers', by id

	sortBy  column
	reverse bool   // the other way round from the column's own order
	filter  string // rows match it in id, name, identity, door or remote
	editing bool   // the user is typing the filter

	selID  uint64 // the selected client: the selection follows it when rows move
	selIdx int    // its row
	offset int    // the first row shown: the table scrolls to keep selIdx in view

	confirm uint64 // the client the user is asked to confirm kicking; 0 when none
	note    string // the status line: the outcome of the last action
	noteErr bool   // note is an error
}

func newModel(src Source, opts Options, r *lipgloss.Renderer, run func(func(context.Context) tea.Msg) tea.Cmd) *model {
	return &model{src: src, opts: opts, run: run, st: newStyles(r)}
}

// Init starts the first poll and the ticker.
func (m *model) Init() tea.Cmd {
	m.polling = true
	return tea.Batch(m.poll(), m.tick())
}

func (m *model) tick() tea.Cmd {
	return tea.Tick(m.opts.Interval, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func (m *model) poll() tea.Cmd {
	return m.run(func(ctx context.Context) tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
		defer cancel()
		smp, err := m.src.Poll(ctx)
		return sampleMsg{smp, err}
	})
}

func (m *model) kick(id uint64) tea.Cmd {
	return m.run(func(ctx context.Context) tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
		defer cancel()
		ok, err := m.src.Kick(ctx, id)
		return kickMsg{id, ok, err}
	})
}

// pollNow starts a poll unless one is in flight.
func (m *model) pollNow() tea.Cmd {
	if m.polling {
		return nil
	}
	m.polling = true
	return m.poll()
}

// Update handles a message.
func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height, m.sized = msg.Width, msg.Height, true
	case tickMsg:
		cmd = tea.Batch(m.tick(), m.pollNow())
	case sampleMsg:
		m.polling = false
		m.sampled(msg.smp, msg.err)
	case kickMsg:
		switch {
		case msg.err != nil:
			m.setNote(fmt.Sprintf("kick client %d: %v", msg.id, msg.err), true)
		case !msg.kicked:
			m.setNote(fmt.Sprintf("client %d was not connected any more", msg.id), true)
		default:
			m.setNote(fmt.Sprintf("kicked client %d", msg.id), false)
		}
		cmd = m.pollNow() // show it gone
	case tea.KeyMsg:
		cmd = m.keys(msg)
	}
	m.reselect()
	return m, cmd
}

// sampled takes a poll's answer.
func (m *model) sampled(smp Sample, err error) {
	if err != nil {
		m.lastErr = err
		return
	}
	m.lastErr = nil
	reqs := make(map[session]uint64, len(smp.Clients.Clients))
	for _, c := range smp.Clients.Clients {
		reqs[sessionOf(c)] = c.Requests
	}
	m.rates.observe(smp.Time, reqs)
	gws, wks := map[string]uint64{}, map[string]uint64{}
	if cl := smp.Cluster; cl != nil {
		for _, g := range cl.Gateways {
			gws[g.Gateway] = g.Stats.Requests
		}
		for _, w := range cl.Workers {
			wks[w.ID] = w.Requests
		}
	}
	m.gwRates.observe(smp.Time, gws)
	m.wkRates.observe(smp.Time, wks)
	m.last = &smp
}

func (m *model) setNote(s string, isErr bool) { m.note, m.noteErr = s, isErr }

// keys handles the keys of a message. Keys typed faster than bubbletea
// reads them come in one message ("ss", "/web"): each is a key of its
// own, unless they were pasted.
func (m *model) keys(k tea.KeyMsg) tea.Cmd {
	if k.Type != tea.KeyRunes || len(k.Runes) < 2 || k.Paste {
		return m.key(k)
	}
	var cmds []tea.Cmd
	for _, r := range k.Runes {
		one := k
		one.Runes = []rune{r}
		cmds = append(cmds, m.key(one))
		m.reselect()
	}
	return tea.Batch(cmds...)
}

// key handles a key: a kick waiting for its y, the filter being typed,
// or a command.
func (m *model) key(k tea.KeyMsg) tea.Cmd {
	if k.Type == tea.KeyCtrlC {
		return tea.Quit
	}
	if id := m.confirm; id != 0 {
		m.confirm = 0
		if s := k.String(); s == "y" || s == "Y" {
			m.setNote(fmt.Sprintf("kicking client %d…", id), false)
			return m.kick(id)
		}
		m.setNote(fmt.Sprintf("client %d not kicked", id), false)
		return nil
	}
	if m.editing {
		switch k.Type {
		case tea.KeyEnter:
			m.editing = false
		case tea.KeyEsc:
			m.editing, m.filter = false, ""
		case tea.KeyBackspace, tea.KeyCtrlH:
			if r := []rune(m.filter); len(r) > 0 {
				m.filter = string(r[:len(r)-1])
			}
		case tea.KeyCtrlU:
			m.filter = ""
		case tea.KeyRunes, tea.KeySpace:
			m.filter += clean(string(k.Runes))
		}
		return nil
	}
	rows := m.rows()
	switch k.String() {
	case "q":
		return tea.Quit
	case "up":
		m.selectRow(rows, m.selIdx-1)
	case "down":
		m.selectRow(rows, m.selIdx+1)
	case "pgup":
		m.selectRow(rows, m.selIdx-max(1, m.layout().clients.shown))
	case "pgdown":
		m.selectRow(rows, m.selIdx+max(1, m.layout().clients.shown))
	case "home":
		m.selectRow(rows, 0)
	case "end":
		m.selectRow(rows, len(rows)-1)
	case "s", ">":
		m.sortBy, m.reverse = (m.sortBy+1)%numColumns, false
	case "<":
		m.sortBy, m.reverse = (m.sortBy+numColumns-1)%numColumns, false
	case "r":
		m.reverse = !m.reverse
	case "/":
		m.editing = true
	case "esc":
		m.filter = ""
	case "k":
		m.askKick(rows)
	}
	return nil
}

// askKick asks to confirm kicking the selected client.
func (m *model) askKick(rows []row) {
	if m.selIdx < 0 || m.selIdx >= len(rows) {
		m.setNote("no client selected", true)
		return
	}
	r := rows[m.selIdx]
	if m.last != nil && r.ID == m.last.Self {
		m.setNote(fmt.Sprintf("client %d is this view's own connection", r.ID), true)
		return
	}
	m.confirm = r.ID
}

func (m *model) selectRow(rows []row, i int) {
	if len(rows) == 0 {
		return
	}
	i = max(0, min(i, len(rows)-1))
	m.selIdx, m.selID = i, rows[i].ID
}

// reselect finds the selected client's row after the rows changed; when
// it is gone, the row in its place is selected. Then it scrolls the
// table so that the selected row is in view.
func (m *model) reselect() {
	rows := m.rows()
	if i := slices.IndexFunc(rows, func(r row) bool { return r.ID == m.selID }); i >= 0 {
		m.selIdx = i
	} else {
		m.selectRow(rows, m.selIdx)
	}
	if len(rows) == 0 {
		m.selIdx, m.offset = 0, 0
		return
	}
	n := max(1, m.layout().clients.shown)
	m.offset = max(0, min(m.offset, m.selIdx, len(rows)-n))
	if m.selIdx >= m.offset+n {
		m.offset = m.selIdx - n + 1
	}
}

// rows are the connected clients that match the filter, sorted.
func (m *model) rows() []row {
	if m.last == nil {
		return nil
	}
	var rows []row
	for _, c := range m.last.Clients.Clients {
		if !m.matches(c) {
			continue
		}
		rate, ok := m.rates.get(sessionOf(c))
		rows = append(rows, row{c, rate, ok})
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		d := compare(m.sortBy, a, b)
		if m.sortBy.descending() {
			d = -d
		}
		if m.reverse {
			d = -d
		}
		return cmp.Or(d, cmp.Compare(a.ID, b.ID))
	})
	return rows
}

// compare orders two rows by a column, smallest first.
func compare(c column, a, b row) int {
	switch c {
	case colName:
		return cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
	case colDoor:
		return cmp.Compare(a.Door, b.Door)
	case colRemote:
		return cmp.Compare(a.Remote, b.Remote)
	case colRTT:
		return cmp.Compare(a.HeartbeatRTT, b.HeartbeatRTT)
	case colRate:
		return cmp.Or(cmp.Compare(a.rate, b.rate), compareBool(a.hasRate, b.hasRate))
	case colRequests:
		return cmp.Compare(a.Requests, b.Requests)
	case colErrors:
		return cmp.Compare(a.Errors, b.Errors)
	case colInFlight:
		return cmp.Compare(a.InFlight, b.InFlight)
	case colUp:
		return b.ConnectedAt.Compare(a.ConnectedAt) // connected earlier: up longer
	}
	return cmp.Compare(a.ID, b.ID)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// matches reports whether a client matches the filter: its id, name,
// identity, door or remote address contains it, in any case.
func (m *model) matches(c status.ClientInfo) bool {
	if m.filter == "" {
		return true
	}
	f := strings.ToLower(m.filter)
	for _, s := range []string{strconv.FormatUint(c.ID, 10), c.Name, c.Identity, c.Door, c.Remote} {
		if strings.Contains(strings.ToLower(s), f) {
			return true
		}
	}
	return false
}

// closed are the recently closed sessions that match the filter, newest
// first, as the server lists them.
func (m *model) closed() []status.ClosedInfo {
	if m.last == nil {
		return nil
	}
	var out []status.ClosedInfo
	for _, c := range m.last.Clients.Closed {
		if m.matches(c.ClientInfo) {
			out = append(out, c)
		}
	}
	return out
}

// session tells a client's session from another's with the same id: a
// server that restarted gives its ids again.
type session struct {
	id        uint64
	connected time.Time
}

func sessionOf(c status.ClientInfo) session { return session{c.ID, c.ConnectedAt} }

// rater turns successive readings of counters, one per key, into rates
// per second.
type rater[K comparable] struct {
	last map[K]uint64
	at   time.Time
	rate map[K]float64
}

// observe takes the counters read at a time. A key gets a rate when it
// was in the last reading too and its counter did not go back (a
// restarted server counts from 0 again).
func (r *rater[K]) observe(at time.Time, now map[K]uint64) {
	rate := make(map[K]float64, len(now))
	if dt := at.Sub(r.at).Seconds(); r.last != nil && dt > 0 {
		for k, v := range now {
			if p, ok := r.last[k]; ok && v >= p {
				rate[k] = float64(v-p) / dt
			}
		}
	}
	r.last, r.at, r.rate = now, at, rate
}

// get returns a key's rate, and false when it has none yet.
func (r *rater[K]) get(k K) (float64, bool) {
	v, ok := r.rate[k]
	return v, ok
}

// clean makes text from the server safe to print: a client chooses its
// own name, and a control character in it must not reach the terminal.
func clean(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
