package cli

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/internal/catalog"
	"github.com/nexo-project/nexo/internal/natsembed"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/service"
)

// startWorker runs `nexo worker` in-process until the test ends.
func startWorker(t *testing.T, args ...string) {
	t.Helper()
	inProcess(t, 1, nil, "nexo worker stopped", append([]string{"worker"}, args...)...)
}

// TestClusterCommands: `nexo serve --nats --services none` is a pure
// gateway, `nexo worker` serves it, and `nexo clients --cluster` shows both.
func TestClusterCommands(t *testing.T) {
	ns, err := natsembed.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	startWorker(t, "--nats", ns.URL(), "--services", "math")
	gw := serve(t, nil, "--nats", ns.URL(), "--services", "none", "--name", "gw-one")

	out, errOut, err := run(nil, "call", "--addr", gw["native"], "math.mul", "6", "7")
	if err != nil || strings.TrimSpace(out) != "42" {
		t.Fatalf("math.mul through the gateway: %q %q %v", out, errOut, err)
	}
	// sys.echo is in no worker's services: no responders, at once.
	if _, _, err := run(nil, "call", "--addr", gw["native"], "sys.echo", "x"); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Errorf("sys.echo with no worker for it: %v, want UNAVAILABLE", err)
	}
	// What serves math.add here is the worker, not this process, once the
	// gateway has gathered the cluster's catalog (at start, in the
	// background).
	nexotest.WaitFor(t, 5*time.Second, "describe math.add to say go worker", func() bool {
		out, _, err := run(nil, "describe", "--addr", gw["native"], "math.add")
		return err == nil && strings.Contains(out, "served by:  go worker\n")
	})
	out, _, err = run(nil, "clients", "--cluster", "--addr", gw["native"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster: 1 gateway, 1 worker, 1 client,", "gw-one", "math", "(this command)"} {
		if !strings.Contains(out, want) {
			t.Errorf("clients --cluster lacks %q:\n%s", want, out)
		}
	}

	single := serve(t, nil)
	if _, _, err := run(nil, "clients", "--cluster", "--addr", single["native"]); err == nil || !strings.Contains(err.Error(), "not part of a cluster") {
		t.Errorf("clients --cluster on a lone server: %v", err)
	}
}

// TestClusterFlags: settings that cannot work are refused with a reason.
func TestClusterFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--services", "none"}, "needs --nats"},
		{[]string{"serve", "--services", "math"}, "needs --nats"},
		{[]string{"serve", "--services", "math,bogus", "--nats", "nats://127.0.0.1:1"}, `unknown service "bogus"`},
		{[]string{"serve", "--nats", "nats://127.0.0.1:1", "--nats-prefix", "a..b"}, "--nats-prefix"},
		{[]string{"worker", "--services", "none"}, "at least one service"},
		{[]string{"worker", "extra"}, "no arguments"},
	}
	for _, tt := range tests {
		_, _, err := run(nil, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
		if _, ok := err.(usageError); !ok {
			t.Errorf("%q: %T is not a usage error (exit status 2)", tt.args, err)
		}
	}
	if !natsServerBuilt {
		_, _, err := run(nil, "serve", "--nats-embedded", "127.0.0.1:0")
		if err == nil || !strings.Contains(err.Error(), "-tags nonats") {
			t.Errorf("--nats-embedded without the NATS server built in: %v", err)
		}
	}
}

// TestBrowserCluster: on a gateway the GUI shows every gateway's clients
// and the workers with the requests they handled.
func TestBrowserCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := browserContext(t)
	ns, err := natsembed.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	startWorker(t, "--nats", ns.URL())
	gwA := serve(t, nil, "--nats", ns.URL(), "--services", "none", "--name", "gw-a")
	gwB := serve(t, nil, "--nats", ns.URL(), "--services", "none", "--name", "gw-b")
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(cctx, gwB["native"], &client.Options{Name: "native-on-b"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := c.Add(cctx, 40, 2); err != nil || n != 42 {
		t.Fatalf("add through gw-b: %d, %v", n, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+gwA["web"]+"/"),
		poll(`!document.querySelector("#cluster-section").hidden`),
		poll(`document.querySelector("#cluster-totals").textContent.includes("2 gateways · 1 workers")`),
		poll(`[...document.querySelectorAll("#cluster-clients tbody tr")].some(r => r.textContent.includes("gw-b") && r.textContent.includes("native-on-b"))`),
		poll(`[...document.querySelectorAll("#cluster-clients tbody tr")].some(r => r.textContent.includes("gw-a") && r.textContent.includes("gui"))`),
		poll(`[...document.querySelectorAll("#workers tbody tr")].some(r => r.textContent.includes("math.add"))`),
	); err != nil {
		t.Fatalf("cluster panel: %v\n%s", err, text(ctx, t, "#cluster-section"))
	}
	// A lone server has no cluster panel.
	single := serve(t, nil)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+single["web"]+"/"), poll(`document.body.dataset.state === "connected"`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the GUI asks sys.cluster once after connecting
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("#cluster-section").hidden`))
	if err != nil || !hidden {
		t.Errorf("a lone server shows a cluster panel (%v)", err)
	}
}

// TestReusePort: two servers with --reuseport share the native port and
// the kernel spreads connections over both; without it the second one
// cannot listen.
func TestReusePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := serve(t, nil, "--reuseport", "--native-addr", addr)
	b := serve(t, nil, "--reuseport", "--native-addr", addr)
	if a["native"] != addr || b["native"] != addr {
		t.Fatalf("native doors %s and %s, want both %s", a["native"], b["native"], addr)
	}
	// 40 connections held open at once: each server gets some of them.
	var conns []*client.Client
	for range 40 {
		c, err := client.Dial(t.Context(), addr, &client.Options{Name: "spread"})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	ids := map[uint64]int{}
	for _, c := range conns {
		ids[c.ID()]++
		c.Close()
	}
	// Each server numbers its clients from 1: ids seen twice came from two
	// servers.
	twice := 0
	for _, n := range ids {
		if n == 2 {
			twice++
		}
	}
	if twice == 0 {
		t.Errorf("client ids %v: every connection went to one server", ids)
	}
	if _, _, err := run(nil, "serve", "--native-addr", addr, "--legacy-addr", "", "--web-addr", "", "--admin-addr", ""); err == nil ||
		!strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a server without --reuseport on a shared port: %v", err)
	}
}

// TestWorkerMetrics: a worker's --health-addr /metrics counts its requests
// and errors by method, says whether it is connected to NATS, and has the
// Go runtime's and the process's metrics. Without --upstream it used to be
// empty.
func TestWorkerMetrics(t *testing.T) {
	ns, err := natsembed.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	w := inProcess(t, 2, nil, "nexo worker stopped", "worker", "--nats", ns.URL(), "--services", "math", "--health-addr", "127.0.0.1:0")
	gw := serve(t, nil, "--nats", ns.URL(), "--services", "none")
	for _, args := range [][]string{{"math.add", "1", "2"}, {"math.add", "3", "4"}} {
		if _, errOut, err := run(nil, append([]string{"call", "--addr", gw["native"]}, args...)...); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
	}
	if _, _, err := run(nil, "call", "--addr", gw["native"], "math.div", "1", "0"); err == nil || !strings.Contains(err.Error(), "DIVISION_BY_ZERO") {
		t.Fatalf("math.div 1 0: %v, want DIVISION_BY_ZERO", err)
	}
	want := []string{ // whole lines, and names of the runtime's and the process's metrics
		"\n" + `nexo_worker_requests_total{method="math.add"} 2` + "\n",
		"\n" + `nexo_worker_requests_total{method="math.div"} 1` + "\n",
		"\n" + `nexo_worker_errors_total{method="math.add"} 0` + "\n",
		"\n" + `nexo_worker_errors_total{method="math.div"} 1` + "\n",
		"\nnexo_nats_connected 1\n",
		"\ngo_goroutines ",
		"\nprocess_open_fds ",
	}
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("the worker's /metrics:\n%s", last)
		}
	}()
	nexotest.WaitFor(t, 5*time.Second, "the worker's /metrics to count the calls", func() bool {
		last = get(t, "http://"+w["health"]+"/metrics")
		for _, line := range want {
			if !strings.Contains(last, line) {
				return false
			}
		}
		return true
	})
}

// TestWorkerStops: a stopping worker is not ready, and what it served
// stays in its /metrics while it drains and after. Its /readyz said ready
// while it drained (with no service left, none was disconnected), and its
// counts went with its services.
func TestWorkerStops(t *testing.T) {
	ns, err := natsembed.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	reg := service.NewRegistry()
	if err := catalog.Register(reg, catalog.Options{Select: map[string]bool{"math": true}}); err != nil {
		t.Fatal(err)
	}
	ws := newWorkers(func() (*nats.Conn, error) { return nats.Connect(ns.URL()) }, backplane.WorkerOptions{Version: "1.0.0"}, slog.New(slog.DiscardHandler))
	defer ws.close()
	if err := ws.start(nil, reg, nil); err != nil {
		t.Fatal(err)
	}
	gw := serve(t, nil, "--nats", ns.URL(), "--services", "none")
	if out, errOut, err := run(nil, "call", "--addr", gw["native"], "math.add", "1", "2"); err != nil || strings.TrimSpace(out) != "3" {
		t.Fatalf("math.add 1 2: %q %q %v", out, errOut, err)
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(ws)
	// value returns a sample of the worker's metrics, or -1.
	value := func(name, method string) float64 {
		mfs, err := metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == name && (method == "" || m.GetLabel()[0].GetValue() == method) {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	if !ws.ready() || value("nexo_nats_connected", "") != 1 || value("nexo_worker_requests_total", "math.add") != 1 {
		t.Fatalf("serving: ready %v, connected %v, math.add served %v; want true, 1, 1",
			ws.ready(), value("nexo_nats_connected", ""), value("nexo_worker_requests_total", "math.add"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if ws.ready() || value("nexo_nats_connected", "") != 0 || value("nexo_worker_requests_total", "math.add") != 1 {
		t.Errorf("stopped: ready %v, connected %v, math.add served %v; want false, 0, 1",
			ws.ready(), value("nexo_nats_connected", ""), value("nexo_worker_requests_total", "math.add"))
	}
}
