package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/internal/upstream"
	"github.com/nexo-project/nexo/wire"
)

func (m *Main) clients(fs *pflag.FlagSet) runFunc {
	addr := fs.String("addr", "127.0.0.1:7070", "server `address` (native door; the caller must be on loopback)")
	asJSON := fs.Bool("json", false, "print the raw JSON list")
	closedRows := fs.Int("closed", 10, "show this many recently closed sessions (0: all)")
	cluster := fs.Bool("cluster", false, "list the clients of every gateway of the cluster, the gateways and the workers (the server must run with --nats)")
	cf := addConnFlags(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("clients takes no arguments, got %q", args)}
		}
		opts, err := cf.options("nexo-clients")
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, *addr, opts)
		if err != nil {
			return dialHint(err)
		}
		defer c.Close()
		method := "sys.clients"
		if *cluster {
			method = "sys.cluster"
		}
		raw, err := c.Call(ctx, method, nil)
		if err != nil {
			if we, ok := errors.AsType[*wire.Error](err); ok && *cluster && we.Code == wire.CodeUnknownMethod && !strings.Contains(we.Msg, "not permitted") {
				return fmt.Errorf("%s is not part of a cluster: start it with --nats", *addr)
			}
			return forAdmins(method, err)
		}
		if *asJSON {
			_, err := fmt.Fprintln(m.Stdout, string(raw))
			return err
		}
		if *cluster {
			return m.printCluster(raw, c.ID())
		}
		var snap status.Snapshot
		if err := json.Unmarshal(raw, &snap); err != nil {
			return fmt.Errorf("sys.clients: %w", err)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%d connected\n", len(snap.Clients))
		fmt.Fprintln(tw, "ID\tDOOR\tNAME\tREMOTE\tCONNECTED\tLAST SEEN\tRTT\tIN FLIGHT\tREQUESTS\tERRORS\tBYTES IN\tBYTES OUT")
		for _, ci := range snap.Clients {
			name := ci.Name
			if ci.Identity != "" {
				name += " <" + ci.Identity + ">"
			}
			if ci.ID == c.ID() {
				name += " (this command)"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s ago\t%s ago\t%s\t%d\t%d\t%d\t%d\t%d\n",
				ci.ID, ci.Door, dash(name), ci.Remote, since(now, ci.ConnectedAt), since(now, ci.LastSeen), rtt(ci.HeartbeatRTT),
				ci.InFlight, ci.Requests, ci.Errors, ci.BytesIn, ci.BytesOut)
		}
		if len(snap.Closed) > 0 {
			fmt.Fprintf(tw, "\n%d recently closed", len(snap.Closed))
			if *closedRows > 0 && len(snap.Closed) > *closedRows {
				fmt.Fprintf(tw, " (newest %d shown; --closed 0 shows all)", *closedRows)
				snap.Closed = snap.Closed[:*closedRows]
			}
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "ID\tDOOR\tNAME\tREMOTE\tCLOSED\tREASON\tREQUESTS\tERRORS")
			for _, ci := range snap.Closed {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s ago\t%s\t%d\t%d\n",
					ci.ID, ci.Door, dash(ci.Name), ci.Remote, since(now, ci.ClosedAt), ci.Reason, ci.Requests, ci.Errors)
			}
		}
		return tw.Flush()
	}
}

// printCluster prints sys.cluster: the gateways, every gateway's clients
// and the workers.
func (m *Main) printCluster(raw []byte, self uint64) error {
	var cl backplane.Cluster
	if err := json.Unmarshal(raw, &cl); err != nil {
		return fmt.Errorf("sys.cluster: %w", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	t := cl.Totals
	fmt.Fprintf(tw, "cluster: %s, %s, %s, %s answered (gathered in %.0f ms)\n\n",
		count(t.Gateways, "gateway"), count(t.Workers, "worker"), count(t.Clients, "client"), count(int(t.Requests), "request"), cl.TookMS)
	fmt.Fprintln(tw, "GATEWAY\tVERSION\tCLIENTS\tREQUESTS\tFORWARDED\tBATCHES\tRETRIED\tUNAVAILABLE\tTIMED OUT\tUPTIME")
	for _, g := range cl.Gateways {
		f := g.Forward
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", g.Gateway, dash(g.Stats.Version), g.Stats.Clients, g.Stats.Requests,
			f.Sent, f.Messages, f.Retried, f.Unavailable, f.TimedOut, time.Duration(g.Stats.UptimeS*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "GATEWAY\tID\tDOOR\tNAME\tREMOTE\tCONNECTED\tRTT\tIN FLIGHT\tREQUESTS\tERRORS")
	for _, ci := range cl.Clients {
		name := ci.Name
		if ci.Identity != "" {
			name += " <" + ci.Identity + ">"
		}
		if ci.ID == self {
			name += " (this command)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s ago\t%s\t%d\t%d\t%d\n", ci.Gateway, ci.ID, ci.Door, dash(name), ci.Remote,
			since(now, ci.ConnectedAt), rtt(ci.HeartbeatRTT), ci.InFlight, ci.Requests, ci.Errors)
	}
	if cl.Truncated {
		fmt.Fprintf(tw, "(%d of %d clients listed: each gateway lists at most %d)\n", len(cl.Clients), t.Clients, backplane.MaxGatewayClients)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "WORKER\tHOST\tRUNTIME\tVERSION\tSERVICES\tREQUESTS\tERRORS\tSTARTED")
	var ups []string
	upstreamRow := func(h *upstream.Health, by string) {
		up := "up"
		if !h.Up {
			up = "DOWN: " + h.Error
		}
		ups = append(ups, fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d\t%.2f ms\t%d", h.URL, by, up, h.Methods, h.Calls, h.Errors, h.AvgMS, h.Connections))
	}
	for _, g := range cl.Gateways {
		for i := range g.Upstreams {
			upstreamRow(&g.Upstreams[i], g.Gateway)
		}
	}
	for _, w := range cl.Workers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s ago\n", w.ID, dash(w.Metadata["host"]), dash(w.Metadata[backplane.MetadataRuntime]),
			dash(w.Version), dash(w.Metadata["services"]), w.Requests, w.Errors, since(now, w.Started))
		if len(w.Endpoints) > 0 && w.Endpoints[0].Upstream != nil {
			upstreamRow(w.Endpoints[0].Upstream, w.ID)
		}
	}
	if len(ups) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "UPSTREAM\tSERVED BY\tHEALTH\tMETHODS\tCALLS\tERRORS\tAVG\tCONNECTIONS")
		for _, u := range ups {
			fmt.Fprintln(tw, u)
		}
	}
	if len(cl.Methods) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "METHOD\tSERVED BY")
		for _, me := range cl.Methods {
			fmt.Fprintf(tw, "%s\t%s\n", me.Name, strings.Join(me.ServedBy, ", "))
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func since(now, t time.Time) time.Duration { return now.Sub(t).Round(time.Second) }

func rtt(us int64) string {
	if us == 0 {
		return "-"
	}
	return (time.Duration(us) * time.Microsecond).String()
}

// count says n things, in the singular for one: "1 client", "2 clients".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
