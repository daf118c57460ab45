// Package catalog assembles what a nexo process serves: the services
// nexo ships, chosen by name; the server's own sys methods; and, on a
// gateway, stubs that forward the services served elsewhere and a
// fallback for methods this binary does not know. serve, worker and the
// test helpers all build their registry with Register.
package catalog

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/sys"
	"github.com/nexo-project/nexo/service"
)

// Services returns every service this binary ships, by the name that
// --services selects.
func Services() map[string][]service.Method {
	return map[string][]service.Method{
		"math": calc.Methods(),
		"sys":  sys.Methods(),
	}
}

// Names returns the names of Services, sorted.
func Names() []string { return slices.Sorted(maps.Keys(Services())) }

// Parse parses a --services list: "all", "none", or a comma-separated list
// of service names.
func Parse(list string) (map[string]bool, error) {
	names := Names()
	sel := make(map[string]bool)
	switch strings.TrimSpace(list) {
	case "all":
		for _, n := range names {
			sel[n] = true
		}
		return sel, nil
	case "none":
		return sel, nil
	}
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("unknown service %q; want all, none or a list of %s", n, strings.Join(names, ", "))
		}
		sel[n] = true
	}
	return sel, nil
}

// Gateway forwards what this process does not serve to workers over NATS
// (a backplane.Gateway).
type Gateway interface {
	// Stub returns a method that forwards m.
	Stub(m service.Method) service.Method
	// Fallback forwards any method not registered.
	Fallback() service.Method
	// Remote is what the gateway knows of the methods its cluster serves.
	Remote() service.Remote
}

// Options say what to register.
type Options struct {
	// Select names the services served in this process; nil means all.
	Select map[string]bool
	// Extra methods to register too (tests add theirs).
	Extra []service.Method
	// Server, when set, is the server this process runs: its sys methods
	// (sys.info, sys.clients, sys.subscribe, sys.stats, sys.kick) are
	// registered, reporting Version. A worker has none.
	Server  sys.Source
	Version string
	// Gateway, when set, forwards the services not selected and every
	// unknown method; without it they are left out.
	Gateway Gateway
	// Cluster, when set, gathers the cluster view for sys.cluster.
	Cluster func(ctx context.Context) (any, error)
}

// Register assembles the methods that opts say into reg.
func Register(reg *service.Registry, o Options) error {
	for _, name := range Names() {
		ms := Services()[name]
		switch {
		case o.Select == nil || o.Select[name]:
		case o.Gateway != nil:
			for i := range ms {
				ms[i] = o.Gateway.Stub(ms[i])
			}
		default:
			continue
		}
		if err := reg.Register(ms...); err != nil {
			return err
		}
	}
	if err := reg.Register(o.Extra...); err != nil {
		return err
	}
	if o.Server != nil {
		if err := reg.Register(sys.ServerMethods(o.Server, reg, o.Version)...); err != nil {
			return err
		}
	}
	if o.Cluster != nil {
		if err := reg.Register(sys.ClusterMethod(o.Cluster)); err != nil {
			return err
		}
	}
	if o.Gateway != nil {
		reg.SetRemote(o.Gateway.Remote())
		return reg.SetFallback(o.Gateway.Fallback())
	}
	return nil
}
