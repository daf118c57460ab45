package backplane

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// The cluster's catalog, as a gateway knows it: the methods its workers
// serve, gathered from their NATS micro INFO, where every endpoint carries
// its method's description (endpointMetadata). A gateway gathers it when
// it starts, every CatalogEvery, and at once when a request names a method
// it does not know, at most once per CatalogMinGap: a misspelt method
// costs one gather a second at most, and a worker that joins with a new
// method is reachable at its first request. A method is remembered
// CatalogForget after it was last seen, so that a method whose workers are
// all gone is UNAVAILABLE, not UNKNOWN_METHOD.
const (
	// JoinedQuery is the admin query a worker publishes when it starts:
	// gateways gather the catalog at once.
	JoinedQuery   = "joined"
	CatalogEvery  = 5 * time.Second
	CatalogMinGap = time.Second
	CatalogForget = 10 * time.Minute
	// MaxGone bounds the names one Joined message may say are gone.
	MaxGone = 4096
)

// clusterCatalog is a gateway's catalog of the methods its workers serve.
type clusterCatalog struct {
	nc       *nats.Conn
	subject  string // the workers' INFO
	subjects Subjects
	log      *slog.Logger
	stub     func(service.Method) service.Method // forwards a method

	mu        sync.Mutex
	methods   map[string]known
	at        time.Time            // when the last gather began
	gathering chan struct{}        // closed when the gather under way ends; nil when none
	again     bool                 // a worker joined during the gather under way: gather once more
	err       error                // the last gather's failure
	gone      map[string]time.Time // methods a worker stopped serving, and when it said so
	stop      chan struct{}
	done      chan struct{}
}

// errNotConnected is a gather's failure while NATS is unreachable.
var errNotConnected = errors.New("not connected to NATS")

// known is a method of the cluster.
type known struct {
	d    service.Described
	seen time.Time
	m    *service.Method // the stub that forwards it, made on first use
}

func newClusterCatalog(nc *nats.Conn, subjects Subjects, log *slog.Logger, stub func(service.Method) service.Method) *clusterCatalog {
	c := &clusterCatalog{nc: nc, subject: "$SRV.INFO." + WorkerService, subjects: subjects, log: log, stub: stub,
		methods: map[string]known{}, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// loop gathers the catalog every CatalogEvery until close.
func (c *clusterCatalog) loop() {
	defer close(c.done)
	t := time.NewTicker(CatalogEvery)
	defer t.Stop()
	for {
		c.refresh()
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

func (c *clusterCatalog) close() {
	close(c.stop)
	<-c.done
}

// Joined is what a worker publishes on JoinedQuery: nothing when it
// starts, or the methods it stopped serving (an upstream's document lost
// them), so that gateways forget them at once if no worker serves them
// any more, instead of CatalogForget later.
type Joined struct {
	Gone []string `json:"gone,omitempty"`
}

// joined is told that a worker started, or serves fewer methods: the
// catalog is gathered now, or once more after the gather under way,
// which may have missed it.
func (c *clusterCatalog) joined(data []byte) {
	var j Joined
	_ = json.Unmarshal(data, &j) // empty: a worker that started
	c.mu.Lock()
	now := time.Now()
	for _, name := range j.Gone[:min(len(j.Gone), MaxGone)] {
		if c.gone == nil {
			c.gone = map[string]time.Time{}
		}
		c.gone[name] = now
	}
	busy := c.gathering != nil
	c.again = c.again || busy
	c.mu.Unlock()
	if !busy {
		go c.refresh()
	}
}

// refresh gathers the catalog now, or waits for the gather under way.
func (c *clusterCatalog) refresh() {
	c.mu.Lock()
	if ch := c.gathering; ch != nil {
		c.mu.Unlock()
		<-ch
		return
	}
	ch := make(chan struct{})
	started := time.Now()
	c.gathering, c.at = ch, started
	c.mu.Unlock()

	var infos [][]byte
	err := errNotConnected
	if c.nc.IsConnected() {
		infos, err = Gather(context.Background(), c.nc, c.subject, nil)
	}
	now := time.Now()
	c.mu.Lock()
	c.err = err
	if err == nil {
		servedBy := map[string][]string{} // by method: what serves it, over every worker
		for _, b := range infos {
			var info micro.Info
			if json.Unmarshal(b, &info) != nil {
				continue
			}
			for _, ep := range info.Endpoints {
				var d service.Described
				if json.Unmarshal([]byte(ep.Metadata[MetadataDescription]), &d) != nil || d.Name == "" ||
					ep.Subject != c.subjects.Service(d.Name) {
					continue // a worker of an older nexo (no description), or of another cluster (prefix)
				}
				if len(d.ServedBy) == 0 {
					d.ServedBy = []string{ServedByGoWorker} // a worker of an older nexo
				}
				servedBy[d.Name] = append(servedBy[d.Name], d.ServedBy...)
				d.ServedBy = nil // set below, from every worker's
				k := c.methods[d.Name]
				if k.d.Name == "" || !sameDescription(k.d, d) {
					k = known{d: d} // new, or described anew: the stub is made again
				}
				k.seen = now
				c.methods[d.Name] = k
			}
		}
		for name, at := range c.gone {
			if at.Before(started) { // this gather began after the worker said so
				if _, seen := servedBy[name]; !seen {
					delete(c.methods, name)
				}
				delete(c.gone, name)
			}
		}
		for name, sb := range servedBy {
			k := c.methods[name]
			slices.Sort(sb)
			k.d.ServedBy = slices.Compact(sb)
			c.methods[name] = k
		}
		for name, k := range c.methods {
			if now.Sub(k.seen) > CatalogForget {
				delete(c.methods, name)
			}
		}
	} else if !errors.Is(err, errNotConnected) { // the gateway logs NATS's comings and goings itself
		c.log.Warn("cannot gather the cluster's catalog", slog.Any("err", err))
	}
	c.gathering = nil
	again := c.again
	c.again = false
	c.mu.Unlock()
	close(ch)
	if again {
		c.refresh()
	}
}

// sameDescription reports whether two descriptions say the same, but for
// what serves them.
func sameDescription(a, b service.Described) bool {
	a.ServedBy, b.ServedBy = nil, nil
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// lookup reports whether the cluster serves name, gathering the catalog
// again first when name is unknown and the last gather is older than
// CatalogMinGap. err is set when the catalog cannot be gathered (NATS is
// unreachable), so that nothing can be said of name.
func (c *clusterCatalog) lookup(name string) (ok bool, err error) {
	c.mu.Lock()
	_, ok = c.methods[name]
	stale := time.Since(c.at) >= CatalogMinGap || c.gathering != nil
	c.mu.Unlock()
	if ok || !stale {
		return ok, nil
	}
	c.refresh()
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok = c.methods[name]
	if !ok && c.err != nil {
		return false, c.err
	}
	return ok, nil
}

// Describe implements service.Remote: the methods of the cluster.
func (c *clusterCatalog) Describe() []service.Described {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]service.Described, 0, len(c.methods))
	for _, k := range c.methods {
		out = append(out, k.d)
	}
	slices.SortFunc(out, func(a, b service.Described) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Method implements service.Remote: a stub forwarding a JSON method of the
// cluster, for the JSON doors. A binary method of the cluster has no JSON
// form the gateway knows, so it is nil there.
func (c *clusterCatalog) Method(name string) *service.Method {
	m, d := c.forward(name)
	if m == nil || d.Encoding != "json" {
		return nil
	}
	return m
}

// forward returns the stub forwarding a method of the cluster, and its
// description, or nil when the catalog has no such method. The native
// door calls it through the gateway's fallback: its requests are batched
// like a built-in method's, and retried when it is described idempotent.
func (c *clusterCatalog) forward(name string) (*service.Method, service.Described) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.methods[name]
	if !ok {
		return nil, service.Described{}
	}
	return c.stubLocked(name, k), k.d
}

// forwardBytes is forward for a name still in a connection's read buffer,
// as the fallback has it: the lookup copies nothing.
func (c *clusterCatalog) forwardBytes(name []byte) *service.Method {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.methods[string(name)] // a map index with a converted key does not allocate
	if !ok {
		return nil
	}
	return c.stubLocked(string(name), k)
}

// stubLocked returns k's stub, made the first time it is asked for.
func (c *clusterCatalog) stubLocked(name string, k known) *service.Method {
	if k.m == nil {
		m := c.stub(service.Method{Name: name, Summary: k.d.Summary, Idempotent: k.d.Idempotent, JSON: service.PassJSON,
			Desc: service.Description{Params: k.d.Params, Result: k.d.Result, Examples: k.d.Examples, Errors: codes(k.d.Errors)}})
		k.m = &m
		c.methods[name] = k
	}
	return k.m
}

// codes turns error names back into codes.
func codes(names []string) []wire.Code {
	var out []wire.Code
	for _, n := range names {
		if c, ok := wire.ParseCode(n); ok {
			out = append(out, c)
		}
	}
	return out
}
