// Package top is `nexo top`: a terminal view of a running server in the
// spirit of htop and `nats top`. It polls the server every interval and
// shows the connected clients (door, remote address, RTT, requests per
// second, errors, requests in flight), totals per door, the recently
// closed sessions and why they closed, and, on a gateway, the gateways
// and workers of the cluster. The rows can be sorted and filtered, and
// the selected client kicked.
//
// The view is a bubbletea program. It reads the server only through a
// Source, so that tests can drive it without one; ClientSource is the
// Source over nexo's native door.
package top

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/status"
)

// Source is the server the view shows and acts on.
type Source interface {
	// Poll reads the server's client list, and its cluster on a gateway.
	Poll(ctx context.Context) (Sample, error)
	// Kick disconnects a client (sys.kick); false when it was not
	// connected.
	Kick(ctx context.Context, id uint64) (bool, error)
}

// Sample is what one poll found.
type Sample struct {
	// Time is when the server answered. Rates are the change of the
	// counters between two samples over the time between them.
	Time time.Time
	// Server names the server shown ("nexo/0.3.0 at 127.0.0.1:7070").
	Server string
	// Self is the view's own client id on the server, 0 if it has none.
	Self uint64
	// Clients are the connected and the recently closed clients.
	Clients status.Snapshot
	// Cluster is the gateways and workers of the cluster when the server
	// is a gateway, nil when it is not.
	Cluster *backplane.Cluster
	// ClusterErr says why a gateway's cluster could not be gathered
	// (it lost NATS, say); Cluster is nil then.
	ClusterErr error
}

// Options configure the view. The zero value means the defaults.
type Options struct {
	// Interval is the time between polls. Default 1s.
	Interval time.Duration
	// Timeout bounds each poll and kick. Default 10s.
	Timeout time.Duration
	// Target names the server in the title until the first poll
	// answers ("127.0.0.1:7070").
	Target string
}

// DefaultInterval is the time between polls when Options.Interval is 0.
const DefaultInterval = time.Second

// defaultTimeout bounds a poll or a kick when Options.Timeout is 0.
const defaultTimeout = 10 * time.Second

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	return o
}

// Run shows the view on out, reading keys from in, until the user quits
// (q or Ctrl-C) or ctx ends; either way it returns nil. When in and out
// are a terminal, it takes over the terminal (raw mode, the alternate
// screen) and gives it back on return. Run waits for the polls and kicks
// it started before it returns, so src may be closed then.
func Run(ctx context.Context, src Source, opts Options, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	var cs calls
	defer cs.wait() // after cancel: the calls in flight end with ctx
	defer cancel()
	m := newModel(src, opts.withDefaults(), lipgloss.NewRenderer(out), func(f func(context.Context) tea.Msg) tea.Cmd {
		return func() tea.Msg { return cs.do(ctx, f) }
	})
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen())
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil || errors.Is(err, tea.ErrInterrupted) {
		return nil // ctx ended (a signal), or SIGINT reached the program
	}
	return err
}

// calls are the polls and kicks the view started, each in a goroutine of
// bubbletea's: Run waits for them before it returns.
type calls struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool // guarded by mu: no new call starts
}

// do runs f unless wait was called; then it returns nil.
func (cs *calls) do(ctx context.Context, f func(context.Context) tea.Msg) tea.Msg {
	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		return nil
	}
	cs.wg.Add(1)
	cs.mu.Unlock()
	defer cs.wg.Done()
	return f(ctx)
}

// wait stops new calls and waits for those running.
func (cs *calls) wait() {
	cs.mu.Lock()
	cs.closed = true
	cs.mu.Unlock()
	cs.wg.Wait()
}
