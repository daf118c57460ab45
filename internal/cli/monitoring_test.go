package cli

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nexo-project/nexo/client"
)

// TestMonitoring: deploy/monitoring's dashboard and alerts name only
// metrics a real gateway with an upstream exports, the alerts pass
// `promtool check rules` and their tests, and the live /metrics passes
// `promtool check metrics`.
func TestMonitoring(t *testing.T) {
	var doc atomic.Pointer[string]
	one := `{"openrpc":"1.3.2","methods":[{"name":"up.one","params":[]}]}`
	doc.Store(&one)
	doors := serveDoors(t, 5, nil, "--nats-embedded", "127.0.0.1:0", "--upstream", docServer(t, &doc))
	c, err := client.Dial(context.Background(), doors["native"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Samples for the metrics that have none until something happens: a
	// call, an upstream's error, a heartbeat.
	_, _ = nativeCall(c, "up.one", "", 2*time.Second)
	_, _ = nativeCall(c, "up.one", "not json", 2*time.Second)
	_, _ = nativeCall(c, "math.add", "", 2*time.Second)

	exposition := get(t, "http://"+doors["admin"]+"/metrics")
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\w+) (\w+)`).FindAllStringSubmatch(exposition, -1) {
		exported[m[1]] = true
		if m[2] == "histogram" {
			exported[m[1]+"_bucket"], exported[m[1]+"_sum"], exported[m[1]+"_count"] = true, true, true
		}
	}
	// Metrics a sample of which needs a failure this test does not cause.
	for _, name := range []string{"nexo_handshakes_failed_total", "nexo_heartbeat_rtt_seconds_bucket"} {
		exported[name] = true
	}

	dir := "../../deploy/monitoring/"
	used := map[string][]string{} // metric -> files
	nexoMetric := regexp.MustCompile(`\bnexo_[a-z_]+\b`)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile(dir + "nexo-dashboard.json")
	if err != nil || json.Unmarshal(b, &dash) != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			for _, m := range nexoMetric.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "dashboard: "+p.Title)
			}
		}
	}
	rules, err := os.ReadFile(dir + "alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.Contains(line, "#") {
			line = line[:strings.Index(line, "#")]
		}
		for _, m := range nexoMetric.FindAllString(line, -1) {
			used[m] = append(used[m], "alerts.yml")
		}
	}
	if exprs < 20 || len(used) < 15 {
		t.Errorf("%d dashboard queries naming %d metrics: the dashboard was not read", exprs, len(used))
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range used {
			if !yield(k) {
				return
			}
		}
	}) {
		if !exported[name] {
			t.Errorf("%s, used by %v, is not a metric nexo exports", name, slices.Compact(used[name]))
		}
	}

	if _, err := exec.LookPath("promtool"); err != nil {
		need(t, "promtool (Debian's prometheus package)", false)
	}
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(exposition)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
