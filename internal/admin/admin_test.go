package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/admin"
	"github.com/nexo-project/nexo/internal/nexotest"
	"github.com/nexo-project/nexo/internal/status"
	"github.com/nexo-project/nexo/wire"
)

func get(t *testing.T, method, url, token string, into any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, body)
		}
	}
	return resp.StatusCode
}

// TestClients: paging, the door filter, one client, and 404s.
func TestClients(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	base := "http://" + srv.Admin
	var ids []uint64
	for i := range 5 {
		_, w := nexotest.Hello(t, srv.Native, fmt.Sprintf("n%d", i))
		ids = append(ids, w.ClientID)
	}
	leg := nexotest.Dial(t, srv.Legacy)
	nexotest.WaitFor(t, 2*time.Second, "6 clients", func() bool { return srv.ClientCount() == 6 })

	var p admin.Page
	if code := get(t, "GET", base+"/api/clients?limit=2&offset=1", "", &p); code != 200 ||
		p.Total != 6 || len(p.Clients) != 2 || p.Clients[0].ID != ids[1] || p.Clients[1].ID != ids[2] {
		t.Errorf("page: %d %+v", code, p)
	}
	if code := get(t, "GET", base+"/api/clients?door=legacy", "", &p); code != 200 || p.Total != 1 || p.Clients[0].Door != "legacy" {
		t.Errorf("door filter: %d %+v", code, p)
	}
	if code := get(t, "GET", base+"/api/clients?offset=10", "", &p); code != 200 || p.Total != 6 || len(p.Clients) != 0 {
		t.Errorf("past the end: %d %+v", code, p)
	}
	var one status.ClientInfo
	if code := get(t, "GET", fmt.Sprintf("%s/api/clients/%d", base, ids[3]), "", &one); code != 200 || one.Name != "n3" || one.Door != "native" {
		t.Errorf("one client: %d %+v", code, one)
	}
	for _, bad := range []struct {
		path string
		code int
	}{
		{"/api/clients/999999", 404}, {"/api/clients/abc", 400}, {"/api/clients?limit=0", 400},
		{"/api/clients?limit=5000", 400}, {"/api/clients?offset=-1", 400},
	} {
		if code := get(t, "GET", base+bad.path, "", nil); code != bad.code {
			t.Errorf("GET %s: %d, want %d", bad.path, code, bad.code)
		}
	}
	leg.Close()
}

// TestKick: DELETE sends the native client GOODBYE with the reason, then
// closes it; it shows in /api/closed as kicked.
func TestKick(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	base := "http://" + srv.Admin
	c, w := nexotest.Hello(t, srv.Native, "victim")
	if code := get(t, "DELETE", fmt.Sprintf("%s/api/clients/%d?reason=maintenance", base, w.ClientID), "", nil); code != http.StatusAccepted {
		t.Fatalf("kick: %d", code)
	}
	f := c.Read()
	if f.Type != wire.TypeGoodbye || string(f.Body) != "kicked: maintenance" {
		t.Fatalf("got %v %q, want GOODBYE", f.Type, f.Body)
	}
	c.ExpectClosed()
	var closed []status.ClosedInfo
	nexotest.WaitFor(t, 2*time.Second, "the closed ring", func() bool {
		get(t, "GET", base+"/api/closed", "", &closed)
		return len(closed) > 0 && closed[0].ID == w.ClientID && closed[0].Reason == "kicked"
	})
	if code := get(t, "DELETE", fmt.Sprintf("%s/api/clients/%d", base, w.ClientID), "", nil); code != 404 {
		t.Errorf("kicking a gone client: %d, want 404", code)
	}
}

// TestToken: with a token, /api needs it (401 without or wrong), while
// probes and metrics stay open.
func TestToken(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.AdminToken = "t0ken"
	cfg.AuthFailures = 100 // TestAdminAuthLimit tests the limit
	srv := nexotest.Start(t, cfg)
	expectCodes(t, "http://"+srv.Admin, []codeCase{
		{"GET", "/api/clients", "", 401},
		{"GET", "/api/clients", "wrong", 401},
		{"GET", "/api/clients", "t0ken", 200},
		{"GET", "/api/stats", "", 401},
		{"GET", "/api/closed", "", 401},
		{"DELETE", "/api/clients/1", "", 401},
		{"DELETE", "/api/clients/1", "t0ken", 404},
		{"GET", "/livez", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
		{"GET", "/debug/pprof/", "t0ken", 404}, // off unless asked for
	})
}

// TestAdminAuthLimit: the admin listener shares the server's one
// authentication: wrong tokens are charged to the address; over the limit
// its tokens are checked once a second (429 meanwhile); and failures count
// in nexo_auth_failures_total{door="admin"}.
func TestAdminAuthLimit(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.AdminToken = "t0ken"
	cfg.AuthFailures = 3
	srv := nexotest.Start(t, cfg)
	expectCodes(t, "http://"+srv.Admin, []codeCase{
		{"GET", "/api/clients", "t0ken", 200},
		{"GET", "/api/clients", "wrong", 401},
		{"GET", "/api/clients", "", 401},
		{"GET", "/api/stats", "t0ken!", 401},
		{"GET", "/api/clients", "t0ken", 200}, // over the limit: checked, once a second
		{"GET", "/api/clients", "t0ken", 429}, // within the second: not looked at
		{"GET", "/livez", "", 200},
	})
	if n := srv.Metric(t, "nexo_auth_failures_total", admin.Door); n != 4 {
		t.Errorf("nexo_auth_failures_total{door=admin} = %v, want 4 (3 wrong, 1 refused over the limit)", n)
	}
}

// codeCase is a request and the status it must get.
type codeCase struct {
	method, path, token string
	code                int
}

// expectCodes sends each request to base and checks its status.
func expectCodes(t *testing.T, base string, cases []codeCase) {
	t.Helper()
	for _, tt := range cases {
		if code := get(t, tt.method, base+tt.path, tt.token, nil); code != tt.code {
			t.Errorf("%s %s with %q: %d, want %d", tt.method, tt.path, tt.token, code, tt.code)
		}
	}
}

// TestDebug: with Pprof, /debug/pprof/ and POST /debug/free-memory are
// served behind the token; free-memory reports the heap it released.
func TestDebug(t *testing.T) {
	cfg := nexotest.FastConfig()
	cfg.AdminToken = "t0ken"
	srv := nexotest.Start(t, cfg)
	h, err := admin.Handler(admin.Options{Server: srv.Server, Pprof: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	defer hs.Close()
	expectCodes(t, hs.URL, []codeCase{
		{"GET", "/debug/pprof/", "t0ken", 200},
		{"GET", "/debug/pprof/", "", 401},
		{"POST", "/debug/free-memory", "", 401},
		{"GET", "/debug/free-memory", "t0ken", 405},
	})
	var freed admin.Freed
	if code := get(t, "POST", hs.URL+"/debug/free-memory", "t0ken", &freed); code != 200 {
		t.Fatalf("free-memory: %d", code)
	}
	if freed.HeapInuse == 0 || freed.StackInuse == 0 || freed.ReleasedAfter < freed.ReleasedBefore {
		t.Errorf("free-memory answered %+v", freed)
	}
}

// TestReadyz: /readyz turns 503 as soon as a drain begins, while in-flight
// requests still finish; /livez stays 200.
func TestReadyz(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	base := "http://" + srv.Admin
	c, _ := nexotest.Hello(t, srv.Native, "slow")
	c.Send(wire.AppendRequest(nil, 1, "test.sleep", nexotest.Ms(500)))
	srv.WaitInFlight(t, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	nexotest.WaitFor(t, 2*time.Second, "/readyz to turn 503", func() bool {
		return get(t, "GET", base+"/readyz", "", nil) == http.StatusServiceUnavailable
	})
	if code := get(t, "GET", base+"/livez", "", nil); code != 200 {
		t.Errorf("/livez during the drain: %d", code)
	}
	for {
		f := c.Read()
		if f.Type == wire.TypeResponse {
			if string(f.Body) != "slept" {
				t.Errorf("in-flight request answered %q", f.Body)
			}
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMetrics: /metrics parses as Prometheus text, and its counters match
// what the test did.
func TestMetrics(t *testing.T) {
	srv := nexotest.Start(t, nexotest.FastConfig())
	cl, err := client.Dial(context.Background(), srv.Native, &client.Options{Name: "metrics"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		if _, err := cl.Add(context.Background(), int64(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Div(context.Background(), 1, 0); err == nil {
		t.Fatal("1/0 did not fail")
	}
	if _, err := cl.Call(context.Background(), "no.such.method", nil); err == nil {
		t.Fatal("unknown method did not fail")
	}
	leg := nexotest.Dial(t, srv.Legacy)
	if got := leg.LegacyLine([]byte("\x04\x00\x00\x00\x02\x00\x03\x00SUMA")); got != "5\n" {
		t.Fatalf("legacy SUMA: %q", got)
	}
	_, victim := nexotest.Hello(t, srv.Native, "kicked")
	srv.Kick(victim.ClientID, "metrics")
	nexotest.WaitFor(t, 2*time.Second, "the kick", func() bool { return srv.ClientCount() == 2 })

	resp, err := http.Get("http://" + srv.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := families[name]
		if f == nil {
			t.Fatalf("no %s", name)
		}
	next:
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return metricValue(m)
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"nexo_requests_total", map[string]string{"method": "math.add", "code": "OK"}, 8}, // 7 native + 1 legacy
		{"nexo_requests_total", map[string]string{"method": "math.div", "code": "DIVISION_BY_ZERO"}, 1},
		{"nexo_requests_total", map[string]string{"method": "unknown", "code": "UNKNOWN_METHOD"}, 1},
		{"nexo_clients", map[string]string{"door": "native"}, 1},
		{"nexo_clients", map[string]string{"door": "legacy"}, 1},
		{"nexo_connections_accepted_total", map[string]string{"door": "native"}, 2},
		{"nexo_connections_closed_total", map[string]string{"reason": "kicked"}, 1},
		{"nexo_request_duration_seconds", map[string]string{"method": "math.add"}, 8},
		{"nexo_build_info", nil, 1},
	} {
		if got := value(tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if value("nexo_received_bytes_total", map[string]string{"door": "native"}) == 0 ||
		value("nexo_sent_bytes_total", map[string]string{"door": "native"}) == 0 {
		t.Error("bytes in/out are 0")
	}
	for name, f := range families {
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				if strings.Contains(lp.GetName(), "id") && lp.GetName() != "goversion" {
					t.Errorf("%s has a label %s: no client ids in labels", name, lp.GetName())
				}
			}
		}
	}
	cl.Close()
}

// metricValue is a counter's or gauge's value, or a histogram's count.
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
