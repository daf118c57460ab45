package top

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/status"
)

// TestClientSource polls a real server and kicks through it: the clients
// and their counters, no cluster on a server that is not a gateway, a
// kick that lands and one that finds nobody, and a new connection after
// the view's own was cut.
func TestClientSource(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(name string) func(context.Context) (*client.Client, error) {
		return func(ctx context.Context) (*client.Client, error) {
			return client.Dial(ctx, srv.Native, &client.Options{Name: name})
		}
	}
	other, err := dial("other")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for range 3 {
		if _, err := other.Add(ctx, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	src := NewClientSource(srv.Native, dial("nexo-top"))
	defer src.Close()

	smp, err := src.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := func(smp Sample, id uint64) (status.ClientInfo, bool) {
		i := slices.IndexFunc(smp.Clients.Clients, func(c status.ClientInfo) bool { return c.ID == id })
		if i < 0 {
			return status.ClientInfo{}, false
		}
		return smp.Clients.Clients[i], true
	}
	self, ok := byID(smp, smp.Self)
	if !ok || self.Name != "nexo-top" {
		t.Errorf("the view's own connection %d is not listed as nexo-top: %+v", smp.Self, smp.Clients.Clients)
	}
	if o, ok := byID(smp, other.ID()); !ok || o.Requests != 3 || o.Door != "native" {
		t.Errorf("the other client: %+v, %v; want 3 requests on native", o, ok)
	}
	if smp.Cluster != nil || smp.ClusterErr != nil || !strings.HasPrefix(smp.Server, "nexo/") || !strings.HasSuffix(smp.Server, " at "+srv.Native) {
		t.Errorf("a server that is not a gateway: cluster %v, %v; server %q", smp.Cluster, smp.ClusterErr, smp.Server)
	}
	if smp.Time.IsZero() {
		t.Error("no time")
	}
	// A server that is not a gateway is not asked for sys.cluster: the
	// view's polls cost its own session no error.
	if smp, err = src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if self, _ := byID(smp, smp.Self); self.Errors != 0 {
		t.Errorf("the view's own session has %d errors after its polls", self.Errors)
	}

	if kicked, err := src.Kick(ctx, other.ID()); err != nil || !kicked {
		t.Fatalf("kick: %v, %v", kicked, err)
	}
	select {
	case <-other.Done():
	case <-ctx.Done():
		t.Fatal("the kicked client's connection did not end")
	}
	if kicked, err := src.Kick(ctx, 999999); err != nil || kicked {
		t.Errorf("kick of nobody: %v, %v; want false", kicked, err)
	}
	// The server lists the session as closed once its own reader has seen
	// the end, a moment after the client's.
	nexotest.WaitFor(t, 10*time.Second, "the kicked client gone from the list", func() bool {
		smp, err = src.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := byID(smp, other.ID())
		return !ok
	})
	if i := slices.IndexFunc(smp.Clients.Closed, func(c status.ClosedInfo) bool { return c.ID == other.ID() }); i < 0 ||
		!strings.HasPrefix(smp.Clients.Closed[i].Reason, "kicked") {
		t.Errorf("the kicked client is not among the closed as kicked: %+v", smp.Clients.Closed)
	}

	// The view's own connection is cut: the next poll dials again.
	first := smp.Self
	if kicked, err := src.Kick(ctx, first); err != nil || !kicked {
		t.Fatalf("kick of the view's own connection: %v, %v", kicked, err)
	}
	nexotest.WaitFor(t, 10*time.Second, "a poll on a new connection", func() bool {
		smp, err := src.Poll(ctx)
		return err == nil && smp.Self != first
	})
}
