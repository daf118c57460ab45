package loadgen

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nexo-project/nexo/internal/nexotest"
)

// TestDoors: a short closed-loop run through each door gets answers and no
// errors.
func TestDoors(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	for _, tt := range []struct{ door, addr string }{
		{DoorNative, srv.Native}, {DoorLegacy, srv.Legacy}, {DoorWeb, srv.Web}, {DoorHTTP, srv.Web},
	} {
		t.Run(tt.door, func(t *testing.T) {
			res, err := Run(context.Background(), Config{Addr: tt.addr, Door: tt.door, Connections: 3, Pipeline: 4, Duration: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops == 0 || res.Errors != 0 || res.Door != tt.door || res.P50us <= 0 || res.NumCPU == 0 || res.GoVersion == "" {
				t.Errorf("result %+v", res)
			}
		})
	}
	// Answers that are errors are counted as errors on each door that
	// carries JSON-RPC.
	for _, door := range []string{DoorHTTP, DoorWeb} {
		res, err := Run(context.Background(), Config{Addr: srv.Web, Door: door, Method: "math.div", Params: "[1,0]", Connections: 2, Pipeline: 2, Duration: 200 * time.Millisecond})
		if err != nil || res.Ops == 0 || res.Errors != res.Ops {
			t.Errorf("%s: math.div by zero: %d errors in %d ops, %v", door, res.Errors, res.Ops, err)
		}
	}
	// An answer too long for one buffer of net/http comes chunked, and a
	// result that holds the word "error" is not an error.
	res, err := Run(context.Background(), Config{Addr: srv.Web, Door: DoorHTTP, Method: "sys.describe", Connections: 1, Pipeline: 2, Duration: 200 * time.Millisecond})
	if err != nil || res.Ops == 0 || res.Errors != 0 {
		t.Errorf("http, sys.describe (chunked): %d errors in %d ops, %v", res.Errors, res.Ops, err)
	}
	if _, err := Run(context.Background(), Config{Addr: srv.Legacy, Door: DoorLegacy, Method: "sys.echo"}); err == nil ||
		!strings.Contains(err.Error(), "only math") {
		t.Errorf("sys.echo on the legacy door: %v", err)
	}
	if _, err := Run(context.Background(), Config{Addr: srv.Native, Door: "carrier pigeon"}); err == nil {
		t.Error("an unknown door was accepted")
	}
}

// TestRateCorrectsOmission: against a method that takes 20 ms, a closed
// loop of one request sees ~20 ms per request; at a schedule of one request
// every 5 ms the requests queue up, and the latency counted from each
// scheduled send shows the queue. The paced run never sends faster than
// its schedule.
func TestRateCorrectsOmission(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	base := Config{Addr: srv.Native, Method: "test.sleep", Payload: nexotest.Ms(20), Connections: 1, Pipeline: 1, Duration: 400 * time.Millisecond}
	closed, err := Run(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	paced := base
	paced.Rate = 200
	corrected, err := Run(context.Background(), paced)
	if err != nil {
		t.Fatal(err)
	}
	if !corrected.COCorrected || corrected.Ops > uint64(paced.Rate*paced.Duration.Seconds())+1 {
		t.Errorf("paced run: %d ops in %v at %v/s", corrected.Ops, paced.Duration, paced.Rate)
	}
	// The median, not the maximum: one scheduling hiccup can stretch a
	// maximum, but the queue stretches half of all paced requests.
	if corrected.P50us < 3*closed.P50us {
		t.Errorf("median latency %v µs paced vs %v µs closed: the queue behind the slow server is not counted", corrected.P50us, closed.P50us)
	}
	t.Logf("closed loop: p50 %.0f µs, max %.0f µs; paced: p50 %.0f µs, max %.0f µs", closed.P50us, closed.MaxUs, corrected.P50us, corrected.MaxUs)

	var hgrm, svg bytes.Buffer
	if err := WriteHgrm(&hgrm, corrected.Histogram()); err != nil || !strings.Contains(hgrm.String(), "Percentile") {
		t.Errorf("hgrm: %v\n%s", err, hgrm.String())
	}
	if err := WritePlotSVG(&svg, "a <title> & more", corrected.Histogram()); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&svg)
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
	}
}

// TestIdle: idle clients from two loopback addresses stay connected and
// answer the server's heartbeats.
func TestIdle(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.Heartbeat = 100 * time.Millisecond
	srv := nexotest.Start(t, cfg)
	sources := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	done := make(chan IdleResult, 1)
	go func() {
		res, err := Idle(context.Background(), IdleConfig{Addr: srv.Native, Connections: 40, Sources: sources, Hold: 600 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	nexotest.WaitFor(t, 5*time.Second, "40 clients", func() bool { return srv.ClientCount() == 40 })
	from := map[string]int{}
	for _, c := range srv.Clients().Clients {
		ap, _ := netip.ParseAddrPort(c.Remote)
		from[ap.Addr().String()]++
	}
	if from["127.0.0.1"] != 20 || from["127.0.0.2"] != 20 {
		t.Errorf("clients by source address: %v", from)
	}
	res := <-done
	if res.Up != 40 || res.Failed != 0 || res.Dropped != 0 || res.Pings == 0 {
		t.Errorf("idle result %+v", res)
	}
	nexotest.WaitFor(t, 5*time.Second, "the clients to leave", func() bool { return srv.ClientCount() == 0 })
}
