package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/internal/upstream"
	"github.com/nexo-project/nexo/service"
)

// upstreamFlags are --upstream and --upstream-check, of serve and worker.
type upstreamFlags struct {
	urls  []string
	check *time.Duration
	conns *int
}

func addUpstreamFlags(fs *pflag.FlagSet) *upstreamFlags {
	f := &upstreamFlags{}
	fs.Func("upstream", "`URL` of an HTTP JSON-RPC 2.0 service that answers rpc.discover with an OpenRPC document: its methods join nexo's under their own names (repeatable, or comma-separated)", func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				f.urls = append(f.urls, u)
			}
		}
		return nil
	})
	f.conns = fs.Int("upstream-conns", upstream.DefaultConns, "most connections kept open to each upstream; calls beyond them wait for one")
	f.check = fs.Duration("upstream-check", upstream.DefaultCheck, "how often each upstream's rpc.discover is fetched: its health check, and its methods kept current")
	return f
}

// dial reads every upstream's document and hands it to add, or fails
// naming what is wrong; the ones read are closed then.
func (f *upstreamFlags) dial(maxBody int, log *slog.Logger, changed func(*upstream.Upstream, []service.Method), add func(*upstream.Upstream) error) ([]*upstream.Upstream, error) {
	if *f.check <= 0 {
		return nil, usageError{"--upstream-check: want a positive duration"}
	}
	if *f.conns <= 0 {
		return nil, usageError{"--upstream-conns: want at least 1"}
	}
	var ups []*upstream.Upstream
	seen, shown := map[string]bool{}, map[string]bool{}
	for _, raw := range f.urls {
		if seen[raw] {
			return closeAll(ups), usageError{"--upstream " + raw + " is given twice"}
		}
		seen[raw] = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		u, err := upstream.New(ctx, raw, upstream.Options{Check: *f.check, MaxBody: maxBody, Conns: *f.conns, Log: log, Changed: changed})
		cancel()
		if err != nil {
			return closeAll(ups), err
		}
		if shown[u.URL()] { // the same but for its query
			u.Close()
			return closeAll(ups), usageError{"--upstream " + u.URL() + " is given twice"}
		}
		shown[u.URL()] = true
		ups = append(ups, u)
		if err := add(u); err != nil {
			return closeAll(ups), err
		}
		log.Info("upstream", slog.String("url", raw), slog.Int("methods", len(u.Methods())))
	}
	return ups, nil
}

func closeAll(ups []*upstream.Upstream) []*upstream.Upstream {
	for _, u := range ups {
		u.Close()
	}
	return nil
}

// upstreamMethods keeps a registry's methods of each upstream current:
// what an upstream's document says now replaces what it said before. A
// method whose name is taken already (in-process, or by another upstream:
// another nexo as an upstream describes sys.* too) is left out, with a
// warning; an upstream left with nothing to serve at start-up is an
// error.
type upstreamMethods struct {
	reg   *service.Registry
	log   *slog.Logger
	mu    sync.Mutex
	names map[*upstream.Upstream][]string
}

func newUpstreamMethods(reg *service.Registry, log *slog.Logger) *upstreamMethods {
	return &upstreamMethods{reg: reg, log: log, names: map[*upstream.Upstream][]string{}}
}

// changed is an upstream's Options.Changed.
func (r *upstreamMethods) changed(u *upstream.Upstream, ms []service.Method) {
	if err := r.set(u, ms); err != nil {
		r.log.Warn("cannot change an upstream's methods", slog.String("upstream", u.URL()), slog.Any("err", err))
	}
}

// add registers a new upstream's methods.
func (r *upstreamMethods) add(u *upstream.Upstream) error { return r.set(u, u.Methods()) }

// set registers u's methods ms in place of those it had.
func (r *upstreamMethods) set(u *upstream.Upstream, ms []service.Method) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.names[u]
	mine := map[string]bool{}
	for _, n := range old {
		mine[n] = true
	}
	keep := ms[:0:0]
	var taken []string
	for _, m := range ms {
		if !mine[m.Name] && r.reg.Lookup([]byte(m.Name)) != nil {
			taken = append(taken, m.Name)
			continue
		}
		keep = append(keep, m)
	}
	if len(keep) == 0 && old == nil {
		return fmt.Errorf("--upstream %s: every method it describes is served here already (in-process, or by another upstream): %s", u.URL(), strings.Join(taken, ", "))
	}
	for _, n := range taken {
		r.log.Warn("an upstream's method is served here already; left out", slog.String("upstream", u.URL()), slog.String("method", n))
	}
	if err := r.reg.Replace(old, keep...); err != nil {
		return err
	}
	names := make([]string, len(keep))
	for i, m := range keep {
		names[i] = m.Name
	}
	r.names[u] = names
	return nil
}
